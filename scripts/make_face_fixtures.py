#!/opt/ref/bin/python
"""Reference results of dlib's Python bindings for the face tests (tests/fixtures/faces/).

Made with: dlib-bin 20.0.1 (import dlib), numpy 1.26.4, Pillow 13.0.0, Python /opt/ref/bin/python.
Models: the CC0 dlib models vendored in assets/face/ (sha256 in assets/face/README.md).
Photos: dlib's example photos (examples/faces/, Boost licence, see tests/fixtures/faces/README.md).

For each photo: decode the JPEG with dlib.load_rgb_image and save the decoded pixels as PNG (so the Rust
tests see exactly dlib's pixels, independent of JPEG decoders); then for the HOG detector (upsample 1,
fast) and the CNN detector (mmod_human_face_detector, upsample 1 and 0; slow) record the boxes, the 5-point
landmarks for each box, dlib.get_face_chip(img, shape, 150, 0.25) as PNG and
compute_face_descriptor(img, shape, 0, 0.25). Also the landmarks on the grayscale image
(dlib's rgb->gray conversion) for the HOG boxes. JSON is rewritten after every photo.

Usage: scripts/make_face_fixtures.py SRC_DIR MODEL_DIR OUT_DIR [photo.jpg ...]
"""
import json
import os
import shutil
import sys
import time

import dlib
import numpy as np
from PIL import Image

DEFAULT_PHOTOS = ["2008_001009.jpg", "2009_004587.jpg", "2008_002506.jpg", "Tom_Cruise_avp_2014_4.jpg", "2007_007763.jpg",
                  "dogs.jpg"]
# Photos stored as their original JPEG instead of a decoded PNG (large, and only used as a no-face negative;
# decoders may differ by a few levels, which cannot turn "no face" into a face).
JPEG_ONLY = {"dogs.jpg"}


def rect_list(r):
    return [r.left(), r.top(), r.right(), r.bottom()]


def face_record(img, rect, sp, facerec, chip_path, confidence=None):
    shape = sp(img, rect)
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    Image.fromarray(np.asarray(chip)).save(chip_path)
    desc = facerec.compute_face_descriptor(img, shape, 0, 0.25)
    rec = {
        "rect": rect_list(rect),
        "landmarks": [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)],
        "chip": os.path.basename(chip_path),
        "descriptor": [float(v) for v in desc],
    }
    if confidence is not None:
        rec["confidence"] = float(confidence)
    return rec


def main():
    src, models, out = sys.argv[1], sys.argv[2], sys.argv[3]
    photos = sys.argv[4:] or DEFAULT_PHOTOS
    sp = dlib.shape_predictor(os.path.join(models, "shape_predictor_5_face_landmarks.dat"))
    facerec = dlib.face_recognition_model_v1(os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat"))
    cnn = dlib.cnn_face_detection_model_v1(os.path.join(models, "mmod_human_face_detector.dat"))
    hog = dlib.get_frontal_face_detector()
    os.makedirs(os.path.join(out, "chips"), exist_ok=True)
    ref = {"generator": "scripts/make_face_fixtures.py", "dlib": dlib.__version__, "images": []}
    json_path = os.path.join(out, "reference.json")
    for photo in photos:
        stem = os.path.splitext(photo)[0]
        img = dlib.load_rgb_image(os.path.join(src, photo))
        if photo in JPEG_ONLY:
            shutil.copyfile(os.path.join(src, photo), os.path.join(out, photo))
            png = None
        else:
            png = stem + ".png"
            Image.fromarray(img).save(os.path.join(out, png), optimize=True)
        entry = {"source_jpeg": photo, "png": png, "width": img.shape[1], "height": img.shape[0]}
        gray = np.asarray(Image.fromarray(img)).astype(np.uint32).sum(axis=2) // 3  # dlib assign_pixel rgb->gray
        gray = gray.astype(np.uint8)
        hog_recs = []
        for i, r in enumerate(hog(img, 1)):
            rec = face_record(img, r, sp, facerec, os.path.join(out, "chips", f"{stem}_hog_{i}.png"))
            g = sp(gray, r)
            rec["landmarks_gray"] = [[g.part(k).x, g.part(k).y] for k in range(g.num_parts)]
            hog_recs.append(rec)
        entry["hog_upsample1"] = hog_recs
        for ups in (0, 1):
            t0 = time.time()
            dets = cnn(img, ups)
            entry[f"cnn_seconds_upsample{ups}"] = round(time.time() - t0, 1)
            entry[f"cnn_upsample{ups}"] = [
                face_record(img, d.rect, sp, facerec, os.path.join(out, "chips", f"{stem}_cnn{ups}_{i}.png"),
                            d.confidence)
                for i, d in enumerate(dets)
            ]
        ref["images"].append(entry)
        with open(json_path, "w") as f:
            json.dump(ref, f, indent=1)
        print(photo, "done", entry["cnn_seconds_upsample0"], entry["cnn_seconds_upsample1"], flush=True)


if __name__ == "__main__":
    main()
