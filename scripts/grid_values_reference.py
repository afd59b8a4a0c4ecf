"""Reference values for src/grid/values.rs: A1111 1.10 xyz_grid.py `process_axis` for int/float axes.

Run with /opt/ref/bin/python (Python 3.11.7, numpy 1.26.4) > tests/fixtures/grid/values.jsonl. The regexes and the expansion code below are copied from
AUTOMATIC1111 stable-diffusion-webui scripts/xyz_grid.py (1.10, via Forge e26abf87); labels use
`format_value_add_label` (`round(x, 8)`). Prints one line per case: input, values, labels (or the error).
"""
import csv
import json
import re
from io import StringIO
from itertools import chain

import numpy as np

re_range = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")
re_range_float = re.compile(r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\(([+-]\d+(?:.\d*)?)\s*\))?\s*")
re_range_count = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\[(\d+)\s*])?\s*")
re_range_count_float = re.compile(r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\[(\d+(?:.\d*)?)\s*])?\s*")


def csv_string_to_list_strip(data_str):
    return list(map(str.strip, chain.from_iterable(csv.reader(StringIO(data_str), skipinitialspace=True))))


def process(vals, typ):
    valslist = csv_string_to_list_strip(vals)
    ext = []
    for val in valslist:
        if val.strip() == '':
            continue
        if typ == int:
            m = re_range.fullmatch(val)
            mc = re_range_count.fullmatch(val)
            if m is not None:
                ext += list(range(int(m.group(1)), int(m.group(2)) + 1, int(m.group(3)) if m.group(3) is not None else 1))
            elif mc is not None:
                ext += [int(x) for x in np.linspace(start=int(mc.group(1)), stop=int(mc.group(2)), num=int(mc.group(3)) if mc.group(3) is not None else 1).tolist()]
            else:
                ext.append(val)
        else:
            m = re_range_float.fullmatch(val)
            mc = re_range_count_float.fullmatch(val)
            if m is not None:
                start, end = float(m.group(1)), float(m.group(2))
                step = float(m.group(3)) if m.group(3) is not None else 1
                ext += np.arange(start, end + step, step).tolist()
            elif mc is not None:
                ext += np.linspace(start=float(mc.group(1)), stop=float(mc.group(2)), num=int(mc.group(3)) if mc.group(3) is not None else 1).tolist()
            else:
                ext.append(val)
    return [typ(x) for x in ext]


CASES = [
    ("int", "1-5"), ("int", "1-5 (+2)"), ("int", "1-10 (+3)"), ("int", "5-1 (-2)"), ("int", "1-10 [5]"),
    ("int", "10, 20,,30"), ("int", "-5--3"), ("int", "1-3, 7"), ("int", "1, x"), ("int", "1.5"),
    ("float", "0.4-1.0 [4]"), ("float", "0.1-0.3 (+0.1)"), ("float", "0.4-1.0"), ("float", "0.4, 0.6,0.8 ,1"),
    ("float", "-0.5"), ("float", "0.4-1.0 [4.0]"), ("float", "0-1 [6]"), ("float", "0.2-1.0 (+0.2)"),
    ("float", "7, 7.5, 1e-05"),
]
for typ_name, text in CASES:
    typ = int if typ_name == "int" else float
    try:
        values = process(text, typ)
        labels = [str(round(v, 8)) if typ == float else str(v) for v in values]
        print(json.dumps({"type": typ_name, "input": text, "values": values, "labels": labels}))
    except Exception as e:  # noqa: BLE001 - the error is the reference
        print(json.dumps({"type": typ_name, "input": text, "error": type(e).__name__}))
