#!/usr/bin/env python3
"""Real photos of one person (reference / held-out) and of other people (strangers): tests/fixtures/people/.

Made with: Python 3.11.7, Pillow 13.0.0 (python3 -m venv /opt/people && /opt/people/bin/pip install pillow),
loraeval's own `faces embed` (dlib CNN detector at upsample 0 + dlib ResNet descriptor) for the facts.

Sources (bare git directories, e.g. as mirrored for this project):
  ageitgey/face_recognition  commit 2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1  (MIT)
  serengil/deepface          commit 243209fd7b46ecdecf72665cc25219f6e8181f25  (MIT)
Every source file is read with `git cat-file` at that commit and checked against the blob id recorded below,
so a moved or changed file is an error, not a silent change of fixture.

Each photo: decode with Pillow (RGB), crop a square around the face, resize with Lanczos so that the side is at
most MAX_SIDE, save as PNG (no metadata). The square is centred on the face box that `loraeval faces embed`
found in the original photo (FACE_BOX below, [left, top, right, bottom]), moved down by 0.15 box widths so chin
and neck stay in, side = 2.4 box widths, shrunk to fit the image and moved inside it where needed.

Usage:
  scripts/make_people_fixtures.py FACE_RECOGNITION_GIT_DIR DEEPFACE_GIT_DIR [OUT_DIR] [--facts LORAEVAL_BINARY]
OUT_DIR defaults to tests/fixtures/people. With --facts, the stored PNGs are embedded with the given loraeval
binary and OUT_DIR/facts.json is written (the table in the README is printed on stdout).
"""
import json
import math
import os
import subprocess
import sys

from PIL import Image

MAX_SIDE = 320
MARGIN = 2.4  # crop side / face box width
DROP = 0.15  # crop centre below the box centre, in box widths

REPOS = {
    "face_recognition": ("ageitgey/face_recognition", "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1"),
    "deepface": ("serengil/deepface", "243209fd7b46ecdecf72665cc25219f6e8181f25"),
}

# (output path, repo key, source path, blob id, FACE_BOX in the source photo)
PHOTOS = [
    # Person A: Angelina Jolie (deepface's tests list img1..img11 as "angelinas"); 8 distinct shots.
    ("reference/10_jolie/jolie_img1.png", "deepface", "tests/unit/dataset/img1.jpg",
     "7ceab4fccfa8547eda73b7b3817d45bb95e376a5", [407, 318, 994, 905]),
    ("reference/10_jolie/jolie_img2.png", "deepface", "tests/unit/dataset/img2.jpg",
     "05683ea39f1297d4f3f28efdcab826763e94e359", [556, 236, 963, 643]),
    ("reference/10_jolie/jolie_img4.png", "deepface", "tests/unit/dataset/img4.jpg",
     "b767bd09de331e2c08bd0d08c735bba800f01dfe", [489, 444, 1193, 1149]),
    ("reference/10_jolie/jolie_img5.png", "deepface", "tests/unit/dataset/img5.jpg",
     "29b6a2f445417515c178b0a6281bf8df7ca153f0", [53, 138, 250, 334]),
    ("reference/10_jolie/jolie_img6.png", "deepface", "tests/unit/dataset/img6.jpg",
     "03dcd3e2613111664c71ca82b69498e4597bb3c2", [188, 291, 527, 631]),
    ("heldout/jolie_img7.png", "deepface", "tests/unit/dataset/img7.jpg",
     "7cf10ccf021edc605ae0bac83132850d7da7fba8", [420, 593, 909, 1082]),
    ("heldout/jolie_img10.png", "deepface", "tests/unit/dataset/img10.jpg",
     "267d40116b48d87a0edd797cb40a0a1f5312df1a", [96, 160, 292, 357]),
    ("heldout/jolie_img11.png", "deepface", "tests/unit/dataset/img11.jpg",
     "0ebe70841f65b5e3f2d9b4220e32753f907f8a6b", [153, 127, 436, 411]),
    # Strangers.
    ("strangers/biden_biden2.png", "face_recognition", "examples/knn_examples/train/biden/biden2.jpg",
     "9730f97ab80dbf0ff9553676f4659d34e9c9a963", [370, 234, 859, 723]),
    ("strangers/biden_biden.png", "face_recognition", "examples/biden.jpg",
     "3a0bdc974e9067b1595a6a623a3d898265b0a7a2", [428, 235, 712, 518]),
    ("strangers/obama_obama.png", "face_recognition", "examples/obama.jpg",
     "1ce4b846f50bea6c0e8348a351413bfdd6ea1f86", [375, 154, 611, 390]),
    ("strangers/marissa_img22.png", "deepface", "tests/unit/dataset/img22.jpg",
     "0d18c94ee49d665cf6a62f05d17adcb96166e4a5", [778, 228, 1014, 464]),
    ("strangers/scarlett_img8.png", "deepface", "tests/unit/dataset/img8.jpg",
     "53a55e988a6d854fc550c4ecc900506660e25cea", [170, 145, 454, 428]),
]


def git(git_dir, *args):
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True).stdout


def crop_box(width, height, box):
    left, top, right, bottom = box
    bw = right - left + 1
    cx = (left + right + 1) / 2
    cy = (top + bottom + 1) / 2 + DROP * bw
    side = min(round(MARGIN * bw), width, height)
    x0 = min(max(round(cx - side / 2), 0), width - side)
    y0 = min(max(round(cy - side / 2), 0), height - side)
    return (x0, y0, x0 + side, y0 + side)


def make(git_dirs, out_dir):
    import io
    for out, repo, path, blob, box in PHOTOS:
        git_dir = git_dirs[repo]
        commit = REPOS[repo][1]
        found = git(git_dir, "rev-parse", f"{commit}:{path}").decode().strip()
        if found != blob:
            sys.exit(f"{REPOS[repo][0]} {commit}:{path} is blob {found}, expected {blob}")
        data = git(git_dir, "cat-file", "blob", blob)
        img = Image.open(io.BytesIO(data))
        img = img.convert("RGB")
        crop = crop_box(img.width, img.height, box)
        img = img.crop(crop)
        if img.width > MAX_SIDE:
            img = img.resize((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        dest = os.path.join(out_dir, out)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        img.save(dest, format="PNG", compress_level=9)
        print(f"{out}: {REPOS[repo][0]}:{path} crop {list(crop)} -> {img.width}x{img.height}")


def dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def mean(vs):
    return [sum(v[k] for v in vs) / len(vs) for k in range(len(vs[0]))]


def facts(binary, out_dir):
    files = [p[0] for p in PHOTOS]
    res = subprocess.run([binary, "faces", "embed", "--json", *[os.path.join(out_dir, f) for f in files]],
                         check=True, capture_output=True).stdout
    entries = json.loads(res)
    emb, n_faces = {}, {}
    for f, e in zip(files, entries):
        assert os.path.samefile(e["image"], os.path.join(out_dir, f)), (e["image"], f)
        n_faces[f] = len(e["faces"])
        if e["faces"]:
            emb[f] = max(e["faces"], key=lambda x: (x["box"][2] - x["box"][0]) * (x["box"][3] - x["box"][1]))["embedding"]
    role = {f: f.split("/")[0] for f in files}
    refs = [f for f in files if role[f] == "reference"]
    out = {}
    for f in files:
        others = [r for r in refs if r != f]  # leave-one-out for reference photos
        entry = {"role": role[f], "n_faces": n_faces[f]}
        if f in emb:
            m = mean([emb[r] for r in others])
            near = min(others, key=lambda r: dist(emb[f], emb[r]))
            entry.update({"distance_to_reference_mean": round(dist(emb[f], m), 4),
                          "nearest_reference": near,
                          "nearest_reference_distance": round(dist(emb[f], emb[near]), 4)})
        out[f] = entry
    with open(os.path.join(out_dir, "facts.json"), "w") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print("| file | role | faces | to reference mean | nearest reference | distance |")
    print("| --- | --- | --- | --- | --- | --- |")
    for f in files:
        e = out[f]
        print(f"| {f} | {e['role']} | {e['n_faces']} | {e.get('distance_to_reference_mean', '-')} | "
              f"{e.get('nearest_reference', '-')} | {e.get('nearest_reference_distance', '-')} |")
    print("\nreference pairwise distances:")
    for a in refs:
        print(a, " ".join(f"{dist(emb[a], emb[b]):.3f}" for b in refs))
    return out


def main(argv):
    binary = None
    if "--facts" in argv:
        i = argv.index("--facts")
        binary = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    git_dirs = {"face_recognition": argv[0], "deepface": argv[1]}
    out_dir = argv[2] if len(argv) == 3 else "tests/fixtures/people"
    make(git_dirs, out_dir)
    if binary:
        facts(binary, out_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
