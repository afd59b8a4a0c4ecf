#!/opt/ref/bin/python
"""Reference results of dlib's Python bindings for the face tests (tests/fixtures/faces/).

Made with: dlib-bin 20.0.1 (import dlib), numpy 1.26.4, Pillow 13.0.0, Python /opt/ref/bin/python.
Models: the CC0 dlib models vendored in assets/face/ (sha256 in assets/face/README.md).
Photos: dlib's example photos (examples/faces/, Boost licence, see tests/fixtures/faces/README.md).

For each photo: decode the JPEG with dlib.load_rgb_image and save the decoded pixels as PNG (so the Rust
tests see exactly dlib's pixels, independent of JPEG decoders); then for the HOG detector (upsample 1,
fast) and the CNN detector (mmod_human_face_detector, upsample 1 and 0; slow) record the boxes, the 5-point
landmarks for each box, dlib.get_face_chip(img, shape, 150, 0.25) as PNG and
compute_face_descriptor(img, shape, 0, 0.25). Also dlib's jitter of one chip (see make_jitter_reference)
and the landmarks on the grayscale image
(dlib's rgb->gray conversion) for the HOG boxes. JSON is rewritten after every photo.

Also writes odd/: tiny images in unusual layouts (grey, 16-bit, alpha, palette, CMYK JPEG, truncated, not an
image) with PIL's RGB value at their centre (odd/expected.json). ODD_ONLY=1 makes only those.

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


def make_odd_images(out):
    """Small images in unusual layouts for the image loading tests (odd/), with PIL's RGB view of each."""
    odd = os.path.join(out, "odd")
    os.makedirs(odd, exist_ok=True)
    colour = (200, 120, 40)
    grey = 150
    files = {}
    Image.new("L", (16, 12), grey).save(os.path.join(odd, "gray.png"))
    files["gray.png"] = [grey] * 3
    Image.new("L", (16, 12), grey).save(os.path.join(odd, "gray.jpg"), quality=95)
    files["gray.jpg"] = [grey] * 3
    Image.new("RGBA", (16, 12), colour + (60,)).save(os.path.join(odd, "rgba.png"))
    files["rgba.png"] = list(colour)  # alpha dropped, as PIL convert("RGB")
    Image.new("LA", (16, 12), (grey, 10)).save(os.path.join(odd, "gray_alpha.png"))
    files["gray_alpha.png"] = [grey] * 3
    Image.new("P", (16, 12), 0).save(os.path.join(odd, "palette.png"))  # palette index 0 = black
    files["palette.png"] = [0, 0, 0]
    # 16-bit grayscale: value 40000 -> round(40000*255/65535) = 156
    Image.new("I;16", (16, 12), 40000).save(os.path.join(odd, "gray16.png"))
    files["gray16.png"] = [round(40000 * 255 / 65535)] * 3
    # 16-bit RGB written with numpy through PIL is not supported; write it with the png module layout by hand
    write_rgb16_png(os.path.join(odd, "rgb16.png"), 16, 12, (51400, 30840, 10280))
    files["rgb16.png"] = [round(v * 255 / 65535) for v in (51400, 30840, 10280)]
    cmyk = Image.new("RGB", (16, 16), colour).convert("CMYK")
    cmyk.save(os.path.join(odd, "cmyk.jpg"), quality=95)
    files["cmyk.jpg"] = list(Image.open(os.path.join(odd, "cmyk.jpg")).convert("RGB").getpixel((8, 8)))
    Image.new("RGB", (1, 1), colour).save(os.path.join(odd, "one_pixel.png"))
    files["one_pixel.png"] = list(colour)
    with open(os.path.join(src_dir_default(), "2008_001009.jpg"), "rb") as f:
        jpeg = f.read()
    with open(os.path.join(odd, "truncated.jpg"), "wb") as f:
        f.write(jpeg[: len(jpeg) // 3])
    with open(os.path.join(odd, "not_an_image.jpg"), "wb") as f:
        f.write(b"this is not an image\n")
    png = open(os.path.join(odd, "gray.png"), "rb").read()
    with open(os.path.join(odd, "truncated.png"), "wb") as f:
        f.write(png[: len(png) - 20])
    # a PNG header announcing 20000x20000 pixels with no data (must be refused by size, before decoding)
    write_header_only_png(os.path.join(odd, "huge_header.png"), 20000, 20000)
    # one photo as its original JPEG, to compare the Rust JPEG decoder with dlib's decode (the PNG)
    shutil.copyfile(os.path.join(src_dir_default(), "2008_001009.jpg"), os.path.join(odd, "2008_001009.jpg"))
    with open(os.path.join(odd, "expected.json"), "w") as f:
        json.dump({"rgb_at_centre": files}, f, indent=1)


def write_rgb16_png(path, width, height, rgb):
    import struct
    import zlib

    row = b"\x00" + struct.pack(">HHH", *rgb) * width
    raw = row * height

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_header_only_png(path, width, height):
    import struct
    import zlib

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


_SRC = []


def src_dir_default():
    return _SRC[0]


def make_jitter_reference(src, models, out, sp, cnn):
    """dlib's jitter of one face chip. Must run before anything else jitters: dlib.jitter_image uses a static
    dlib::rand (default seed) and a fresh face_recognition_model_v1 has its own fresh dlib::rand, so both
    sequences start from mt19937's default state."""
    photo = "2008_001009.jpg"
    img = dlib.load_rgb_image(os.path.join(src, photo))
    rect = cnn(img, 1)[0].rect
    shape = sp(img, rect)
    chip = np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25))
    crops = dlib.jitter_image(chip, num_jitters=4)
    names = []
    for i, crop in enumerate(crops):
        name = f"jitter_{i}.png"
        Image.fromarray(np.asarray(crop)).save(os.path.join(out, "chips", name))
        names.append(name)
    fresh = dlib.face_recognition_model_v1(os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat"))
    desc = fresh.compute_face_descriptor(img, shape, 4, 0.25)
    return {
        "photo": photo,
        "rect": rect_list(rect),
        "landmarks": [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)],
        "note": "crops = dlib.jitter_image(get_face_chip(img, shape, 150, 0.25), num_jitters=4), first call in "
                "the process; descriptor_jitter4 = fresh model's compute_face_descriptor(img, shape, 4, 0.25), "
                "the mean of the net over the same 4 jitters of the chip",
        "crops": names,
        "descriptor_jitter4": [float(v) for v in desc],
    }


def main():
    src, models, out = sys.argv[1], sys.argv[2], sys.argv[3]
    _SRC.append(src)
    make_odd_images(out)
    if os.environ.get("ODD_ONLY"):
        return
    photos = sys.argv[4:] or DEFAULT_PHOTOS
    sp = dlib.shape_predictor(os.path.join(models, "shape_predictor_5_face_landmarks.dat"))
    facerec = dlib.face_recognition_model_v1(os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat"))
    cnn = dlib.cnn_face_detection_model_v1(os.path.join(models, "mmod_human_face_detector.dat"))
    hog = dlib.get_frontal_face_detector()
    os.makedirs(os.path.join(out, "chips"), exist_ok=True)
    ref = {"generator": "scripts/make_face_fixtures.py", "dlib": dlib.__version__, "images": []}
    json_path = os.path.join(out, "reference.json")
    ref["jitter"] = make_jitter_reference(src, models, out, sp, cnn)
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
