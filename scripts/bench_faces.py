#!/opt/ref/bin/python
"""dlib side of scripts/bench_faces.sh: makes the 512x512 benchmark portraits and times dlib's Python bindings.

Versions used: Python 3.11 (/opt/ref/bin/python), dlib-bin 20.0.1.post1 (dlib 20.0.1, DLIB_USE_BLAS False),
Pillow 13.0.0, numpy 1.26. Models: assets/face/ (the same files loraeval embeds).

  bench_faces.py portraits OUT_DIR       write portrait_*.png (512x512) cut from tests/fixtures/faces photos
  bench_faces.py time IMAGES... [--repeat N]
        per image: dlib.load_rgb_image, cnn_face_detection_model_v1(img, 0), largest box, 5-point
        shape_predictor, compute_face_descriptor(img, shape, 0, 0.25) (what `loraeval score` does per image);
        prints JSON {"load_models_s", "load_models_cpu_s", "per_image_s": [...], "median_image_s",
        "median_image_cpu_s", "faces": {path: descriptor}} (CPU = process time of all threads)
"""

import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "faces")
ASSETS = os.path.join(REPO, "assets", "face")

# (photo, square crop [left, top, side]) chosen so the face fills about half of the portrait, like an SD
# 512x512 head-and-shoulders render.
PORTRAITS = [
    ("Tom_Cruise_avp_2014_4.png", (0, 120, 565)),
    ("2009_004587.png", (88, 0, 200)),
    ("2008_001009.png", (60, 10, 240)),
    ("2008_002506.png", (300, 20, 180)),
]


def make_portraits(out_dir):
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    for i, (name, (left, top, side)) in enumerate(PORTRAITS):
        img = Image.open(os.path.join(FIXTURES, name)).convert("RGB")
        crop = img.crop((left, top, left + side, top + side)).resize((512, 512), Image.BICUBIC)
        crop.save(os.path.join(out_dir, f"portrait_{i}.png"))


def time_dlib(paths, repeat):
    import dlib

    start, cpu_start = time.perf_counter(), time.process_time()
    detector = dlib.cnn_face_detection_model_v1(os.path.join(ASSETS, "mmod_human_face_detector.dat"))
    predictor = dlib.shape_predictor(os.path.join(ASSETS, "shape_predictor_5_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(
        os.path.join(ASSETS, "dlib_face_recognition_resnet_model_v1.dat")
    )
    load_s, load_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    times, cpu_times, faces = [], [], {}
    for _ in range(repeat):
        for path in paths:
            start, cpu_start = time.perf_counter(), time.process_time()
            img = dlib.load_rgb_image(path)
            dets = detector(img, 0)
            descriptor = None
            if len(dets) > 0:
                best = max(dets, key=lambda d: d.rect.area())
                shape = predictor(img, best.rect)
                descriptor = list(recognizer.compute_face_descriptor(img, shape, 0, 0.25))
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            faces[path] = descriptor
    print(
        json.dumps(
            {
                "load_models_s": load_s,
                "load_models_cpu_s": load_cpu_s,
                "per_image_s": times,
                "median_image_s": statistics.median(times),
                "median_image_cpu_s": statistics.median(cpu_times),
                "faces": faces,
            }
        )
    )


def main(argv):
    if len(argv) >= 2 and argv[0] == "portraits":
        make_portraits(argv[1])
    elif len(argv) >= 2 and argv[0] == "time":
        repeat = 1
        args = argv[1:]
        if "--repeat" in args:
            i = args.index("--repeat")
            repeat = int(args[i + 1])
            args = args[:i] + args[i + 2 :]
        time_dlib(args, repeat)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
