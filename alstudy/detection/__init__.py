"""Object detection for the SAAL study (SAAL §4.2): SSD in plain torch, VOC data and mAP.

* :mod:`.boxes` – IoU, SSD matching, offset encoding, batched NMS, :class:`~.boxes.BoxTargets`.
* :mod:`.ssd` – the SSD detector (VGG16-reduced SSD300 and a narrow CPU backbone), default boxes,
  inference (decoding + per-class NMS).
* :mod:`.loss` – the MultiBox loss with hard negative mining.
* :mod:`.map` – PASCAL VOC mAP (11-point and all-point).
* :mod:`.data` – the VOCdevkit loader and the MNIST detection canvases (a CPU stand-in).
* :mod:`.train` – training and evaluation, as run by :mod:`alstudy.train` for detection data.
* :mod:`.acquisition` – pseudo boxes and the per-image scores of the detection strategies.
"""
