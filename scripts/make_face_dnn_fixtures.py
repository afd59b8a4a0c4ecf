#!/usr/bin/env python3
"""Reference numbers for the dlib DNN parity tests (tests/face_dnn_*.rs).

Versions used: Python 3.11, dlib-bin 20.0.1.post1 (dlib 20.0.1), numpy 1.26.4, pillow 13.0.0.
Run: /opt/ref/bin/python scripts/make_face_dnn_fixtures.py  (detector part takes a few minutes on 2 cores)

Inputs: dlib's example photos (/work/shared/fixtures/faces/, Boost licence) and the models in
/work/shared/assets/face/ (identical to assets/face/ in the repo).
Outputs in tests/fixtures/faces_dnn/:
  chip_*.png          150x150 aligned chips made by dlib.get_face_chip (HOG detector + 5-point predictor)
  descriptors.json    dlib face_recognition_model_v1.compute_face_descriptor(chip) for every chip
  det_*.png           photos downscaled with PIL (LANCZOS) and stored losslessly, so Rust sees dlib's pixels
  detections.json     dlib cnn_face_detection_model_v1(img, upsample) boxes (l,t,r,b inclusive) + confidence
  pipeline.json       end to end on det_2008_002506.png: CNN detector (upsample 0) -> 5-point shape predictor on
                      each box -> compute_face_descriptor(img, shape) (chip 150, padding 0.25, no jitter)
  resize_rgb_*.png    a crop of det_2008_002506.png and dlib.resize_image of it to pyramid_up's size
                      ((2*rows+1) x (2*cols+2)), i.e. what dlib's pyramid_up produces for upsampling
  resize_f32.bin      little-endian f32: a 23x31 ramp+noise image, then dlib.resize_image of it to 19x25
                      and to 40x50 (the float bilinear resize used inside the detector's input pyramid)
"""
import json
import os
import sys
import time

import dlib
import numpy as np
from PIL import Image

PHOTOS = "/work/shared/fixtures/faces"
MODELS = "/work/shared/assets/face"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "faces_dnn")

# (photo, how many faces to chip at most)
CHIP_PHOTOS = [("2008_002506.jpg", 3), ("2009_004587.jpg", 1), ("Tom_Cruise_avp_2014_4.jpg", 1)]
# (photo, output name, longest side after downscaling)
DET_PHOTOS = [
    ("2008_002506.jpg", "det_2008_002506.png", 400),
    ("2008_001322.jpg", "det_2008_001322.png", 400),
    ("Tom_Cruise_avp_2014_4.jpg", "det_tom_cruise.png", 300),
    ("dogs.jpg", "det_dogs.png", 240),
]
UPSAMPLES = [0, 1]


def load_rgb(path):
    return np.array(Image.open(path).convert("RGB"))


def make_chips():
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(os.path.join(MODELS, "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(os.path.join(MODELS, "dlib_face_recognition_resnet_model_v1.dat"))
    records = []
    for photo, limit in CHIP_PHOTOS:
        img = load_rgb(os.path.join(PHOTOS, photo))
        faces = sorted(det(img, 1), key=lambda r: (r.left(), r.top()))[:limit]
        for i, rect in enumerate(faces):
            shape = sp(img, rect)
            chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
            name = "chip_%s_%d.png" % (os.path.splitext(photo)[0], i)
            Image.fromarray(chip).save(os.path.join(OUT, name), optimize=True)
            # Re-read the PNG so the descriptor is computed from exactly the committed pixels.
            chip_back = load_rgb(os.path.join(OUT, name))
            assert (chip_back == chip).all()
            desc = rec.compute_face_descriptor(chip_back)
            records.append({"chip": name, "descriptor": [float(v) for v in desc]})
            print(name, "norm", float(np.linalg.norm(np.array(desc))), flush=True)
    with open(os.path.join(OUT, "descriptors.json"), "w") as f:
        json.dump({"dlib": dlib.__version__, "chips": records}, f, indent=1)


def make_detections():
    cnn = dlib.cnn_face_detection_model_v1(os.path.join(MODELS, "mmod_human_face_detector.dat"))
    records = []
    for photo, name, longest in DET_PHOTOS:
        src = Image.open(os.path.join(PHOTOS, photo)).convert("RGB")
        scale = longest / max(src.size)
        size = (round(src.size[0] * scale), round(src.size[1] * scale))
        small = src.resize(size, Image.LANCZOS)
        small.save(os.path.join(OUT, name), optimize=True)
        img = load_rgb(os.path.join(OUT, name))
        for up in UPSAMPLES:
            t = time.time()
            dets = cnn(img, up)
            boxes = [
                {"l": d.rect.left(), "t": d.rect.top(), "r": d.rect.right(), "b": d.rect.bottom(),
                 "confidence": float(d.confidence)}
                for d in dets
            ]
            print(name, img.shape, "upsample", up, len(boxes), "faces", round(time.time() - t, 1), "s", flush=True)
            records.append({"image": name, "upsample": up, "detections": boxes})
    with open(os.path.join(OUT, "detections.json"), "w") as f:
        json.dump({"dlib": dlib.__version__, "cases": records}, f, indent=1)


def make_resize():
    img = load_rgb(os.path.join(OUT, "det_2008_002506.png"))[40:87, 100:161].copy()  # 47 rows x 61 cols
    Image.fromarray(img).save(os.path.join(OUT, "resize_rgb_in.png"))
    up = dlib.resize_image(img, 2 * img.shape[0] + 1, 2 * img.shape[1] + 2)
    Image.fromarray(up).save(os.path.join(OUT, "resize_rgb_up.png"))
    rng = np.random.default_rng(0)
    src = (np.add.outer(np.arange(23), np.arange(31)) / 50.0 + rng.standard_normal((23, 31))).astype(np.float32)
    down = dlib.resize_image(src, 19, 25).astype(np.float32)
    upf = dlib.resize_image(src, 40, 50).astype(np.float32)
    with open(os.path.join(OUT, "resize_f32.bin"), "wb") as f:
        f.write(src.astype("<f4").tobytes() + down.astype("<f4").tobytes() + upf.astype("<f4").tobytes())
    print("resize fixtures", up.shape, down.shape, upf.shape)


def make_pipeline():
    cnn = dlib.cnn_face_detection_model_v1(os.path.join(MODELS, "mmod_human_face_detector.dat"))
    sp = dlib.shape_predictor(os.path.join(MODELS, "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(os.path.join(MODELS, "dlib_face_recognition_resnet_model_v1.dat"))
    img = load_rgb(os.path.join(OUT, "det_2008_002506.png"))
    faces = []
    for d in cnn(img, 0):
        shape = sp(img, d.rect)
        desc = rec.compute_face_descriptor(img, shape)
        faces.append({
            "rect": [d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()],
            "landmarks": [[p.x, p.y] for p in shape.parts()],
            "descriptor": [float(v) for v in desc],
        })
    with open(os.path.join(OUT, "pipeline.json"), "w") as f:
        json.dump({"dlib": dlib.__version__, "image": "det_2008_002506.png", "faces": faces}, f, indent=1)
    print("pipeline", len(faces), "faces")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    what = sys.argv[1:] or ["chips", "detections", "resize", "pipeline"]
    if "chips" in what:
        make_chips()
    if "detections" in what:
        make_detections()
    if "resize" in what:
        make_resize()
    if "pipeline" in what:
        make_pipeline()
