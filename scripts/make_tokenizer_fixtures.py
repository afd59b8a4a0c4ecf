#!/usr/bin/env python3
"""Reference fixtures for loraeval's `text` module (tokenizer, A1111 prompt syntax, 75-token chunks).

Exact versions used to produce tests/fixtures/text/*.json:
  Python 3.11 (/opt/ref/bin/python), transformers 5.24.0, tokenizers 0.23.3,
  lark 1.3.1 (`python -m pip install --target /tmp/larkpkg lark`; run with PYTHONPATH=/tmp/larkpkg).
Tokenizer: transformers.CLIPTokenizer built from vocab.json + merges.txt of openai/clip-vit-large-patch14
(the SD1.5 tokenizer, copy in the sd15-tiny fixture). In transformers 5.x CLIPTokenizer is the
`tokenizers`-backed one (NFC, \\s+ -> " ", lowercase; no ftfy path exists any more).
A1111 logic is re-implemented here from AUTOMATIC1111/stable-diffusion-webui v1.10 sources:
  modules/prompt_parser.py (parse_prompt_attention, re_attention, re_break, schedule grammar,
  get_multicond_prompt_list/re_AND/re_weight), modules/sd_hijack_clip.py (tokenize_line),
  modules/extra_networks.py (re_extra_net, ExtraNetworkParams),
  extensions-builtin/Lora/extra_networks_lora.py (te/unet multipliers).

Usage: PYTHONPATH=/tmp/larkpkg /opt/ref/bin/python scripts/make_tokenizer_fixtures.py [tokenizer_dir]
"""

import json
import random
import re
import sys
from pathlib import Path

import lark
from transformers import CLIPTokenizer

TOKENIZER_DIR = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/fixtures/sd15-tiny/diffusers/tokenizer")
OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "text"


def load_tokenizer():
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    lines = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(line.split(" ")) for line in lines if line]
    return CLIPTokenizer(vocab=vocab, merges=merges)


# ---------------------------------------------------------------- prompt corpus

HAND_PROMPTS = [
    "", " ", "   \t\n  ", "a", "A", "a photo of a cat", "A Photo Of A CAT",
    "masterpiece, best quality, 1girl, solo, looking at viewer",
    "portrait of sks woman, (smiling:1.2), [blurry], ((detailed eyes)), \\(literal\\)",
    "don't it's we'll I'M you're they've she'd THEY'RE can't",
    "don’t it’s — “quoted” ‘single’ … ellipsis",
    "café naïve résumé Ångström jalapeño façade",
    "e\u0301 a\u0300 o\u0308 n\u0303 decomposed accents",
    "İstanbul ΟΔΟΣ Straße ß ﬁ ﬂ ǅ",
    "東京タワー 夜景 高画質", "서울 야경", "Москва зимой", "القاهرة ليلا", "मुंबई", "กรุงเทพ",
    "😀 😃 👍🏽 👨‍👩‍👧 🏳️‍🌈 ❤️ 🇯🇵", "emoji🙂inside words", "★☆✓✗→←",
    "1920x1080 3.14159 1,000,000 -42 +7 0.5 1e10 ２０２４ ١٢٣ ½ ²",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "multiple     spaces   here", "tabs\tand\nnewlines\r\nand\rreturns", "trailing space ", " leading",
    "nbsp\u00a0ideographic\u3000emspace\u2003nel\u0085zwsp\u200bend",
    "control\x00chars\x01\x1f\x7f and \ufffd replacement",
    "<|startoftext|>a photo<|endoftext|>", "<|ENDOFTEXT|> mixed <|StartOfText|>", "<|endoftext",
    "&amp; &lt;b&gt; &#39; html entities", "https://example.com/path?q=1&x=y#frag user@mail.com",
    "#hashtag @mention $100 50% a+b=c (x) [y] {z} <w> a_b a-b a/b a\\b a|b ~ ` ^",
    "!!!??? ... ,,, ;;; ::: --- ___ *** ### ''' \"\"\"",
    "(masterpiece:1.2), (best quality:1.4), [worst quality:0.8], ((ultra-detailed))",
    "(a:1.3) (b: 0.7) (c :1.1) (d:1.)", "BREAK", "a BREAK b", "aBREAKb", "breaking news BREAKDOWN",
    "<lora:my_face-000004:0.8> photo of sks", "<hypernet:foo:1>", "score_9, score_8_up, rating_safe",
    "RAW photo, 8k uhd, dslr, soft lighting, high quality, film grain, Fujifilm XT3",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "Ⅻ ⅻ ℃ ℉ № ™ ©", "zalgo t̸̢e̵x̷t̶", "a\u0301\u0302\u0303 stacked marks",
    "'s 't 're 'll 'd 'm 've", "''s ''t 'x 'S", "12345678901234567890", "a1b2c3d4", "v1.5 sd-1.5 SD1.5",
]

WORDS = (
    "a photo of portrait woman man sks person smiling face close-up detailed eyes hair blonde brunette red "
    "lighting cinematic studio bokeh background garden city night rain 35mm 85mm f/1.8 canon nikon sony "
    "masterpiece best quality highres ultra-detailed sharp focus realistic photorealistic skin texture "
    "wearing dress shirt jacket glasses earrings necklace looking at viewer upper body full standing "
    "sitting outdoors indoors sunset golden hour soft light dramatic shadows film grain analog kodak "
    "café naïve 東京 emoji😀 1girl 2boys 3d"
).split()
PUNCT = [", ", ", ", " ", " ", " ", ". ", "; ", " - ", ": ", "! ", "\n", "  "]


def random_prompt(rng, n_words):
    out = []
    for _ in range(n_words):
        w = rng.choice(WORDS)
        r = rng.random()
        if r < 0.08:
            w = f"({w}:{rng.choice(['0.5', '0.8', '1.2', '1.35', '2'])})"
        elif r < 0.14:
            w = "(" * rng.randint(1, 3) + w + ")" * rng.randint(0, 3)
        elif r < 0.18:
            w = "[" + w + "]"
        elif r < 0.20:
            w = "BREAK"
        elif r < 0.23:
            w = w.upper()
        out.append(w)
        out.append(rng.choice(PUNCT))
    return "".join(out).strip()


def corpus():
    rng = random.Random(1234)
    prompts = list(HAND_PROMPTS)
    for i in range(250):
        prompts.append(random_prompt(rng, rng.randint(1, 12 if i < 150 else 60)))
    return prompts


# ---------------------------------------------------------------- A1111 prompt_parser (v1.10)

re_attention = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)
re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text):
    res, round_brackets, square_brackets = [], [], []

    def multiply_range(start, mult):
        for p in range(start, len(res)):
            res[p][1] *= mult

    for m in re_attention.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            round_brackets.append(len(res))
        elif tok == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif tok == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif tok == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(re.split(re_break, tok)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


ATTENTION_EXTRA = [
    "normal text", "an (important) word", "(unbalanced", "\\(literal\\]", "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", "[[a]] ((b)) [(c)] ([d])", "(a:1.2.3x)",
    "a ( b : 1.5 ) c", "(a: -0.5)", "(a:+2)", "(a:.5)", "x:1.5)", "a)b]c", "\\\\ back\\slash \\",
    "(a BREAK b)", "a BREAK (b)", "BREAK BREAK", "a\nBREAK\nb", "[a:b:0.5]", "(a:1)(b:1.0)", "((a:1.1))",
    "[[[[x]]]]", "(((((y)))))", "(a[b]c)", "([a)]", "::(x:2)::", "(a:1.2.3)", "(a:.)",
]


# ---------------------------------------------------------------- A1111 sd_hijack_clip.tokenize_line

CHUNK_LENGTH, COMMA_BACKTRACK, BOS, EOS = 75, 20, 49406, 49407


def tokenize_line(tok, line, comma_token):
    parsed = parse_prompt_attention(line)
    tokenized = tok([t for t, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
    chunks, state = [], {"tokens": [], "mults": [], "last_comma": -1}

    def next_chunk():
        to_add = CHUNK_LENGTH - len(state["tokens"])
        tokens = state["tokens"] + [EOS] * to_add
        mults = state["mults"] + [1.0] * to_add
        chunks.append({"tokens": [BOS] + tokens + [EOS], "multipliers": [1.0] + mults + [1.0]})
        state.update(tokens=[], mults=[], last_comma=-1)

    for tokens, (text, weight) in zip(tokenized, parsed):
        if text == "BREAK" and weight == -1:
            next_chunk()
            continue
        for token in tokens:
            if token == comma_token:
                state["last_comma"] = len(state["tokens"])
            elif (COMMA_BACKTRACK != 0 and len(state["tokens"]) == CHUNK_LENGTH and state["last_comma"] != -1
                  and len(state["tokens"]) - state["last_comma"] <= COMMA_BACKTRACK):
                cut = state["last_comma"] + 1
                reloc_t, reloc_m = state["tokens"][cut:], state["mults"][cut:]
                state["tokens"], state["mults"] = state["tokens"][:cut], state["mults"][:cut]
                next_chunk()
                state["tokens"], state["mults"] = reloc_t, reloc_m
            if len(state["tokens"]) == CHUNK_LENGTH:
                next_chunk()
            state["tokens"].append(token)
            state["mults"].append(weight)
    if state["tokens"] or not chunks:
        next_chunk()
    return chunks


def chunk_prompts(rng):
    tags = ["masterpiece", "best quality", "(detailed eyes:1.3)", "photo", "sks woman", "[blurry]", "red hair",
            "((smile))", "outdoors", "bokeh"]
    prompts = [
        "", "a photo of a cat", "BREAK", "a BREAK", "BREAK a", "a BREAK BREAK b", "(a BREAK b)",
        " ".join(["word"] * 74), " ".join(["word"] * 75), " ".join(["word"] * 76), " ".join(["word"] * 160),
        ", ".join(["word"] * 40), ", ".join(["two words"] * 30), ", ".join(tags * 4),
        " ".join(["word"] * 60) + ", " + " ".join(["more"] * 30),
        " ".join(["word"] * 50) + ", " + " ".join(["more"] * 30),
        " ".join(["word"] * 74) + ", next", " ".join(["word"] * 75) + ", next", " ".join(["word"] * 73) + ", , x y",
        ", ".join(["a b c d e f g h i j k l m n o p q r s t u v"] * 5),
        "(" + ", ".join(["emphasised tag"] * 30) + ":1.2), tail", "x, " * 80,
        " ".join(["word"] * 40) + " BREAK " + " ".join(["word"] * 40),
        "東京タワー 😀 " * 12, "café, " * 45,
    ]
    for k in range(50, 76):  # comma at every distance from the chunk end, around the 20-token window
        prompts.append(" ".join(["word"] * k) + ", " + " ".join(["more"] * 30))
    for _ in range(20):
        prompts.append(", ".join(rng.choice(tags) for _ in range(rng.randint(10, 70))))
    return prompts


# ---------------------------------------------------------------- extra networks + Lora multipliers

re_extra_net = re.compile(r"<(\w+):([^>]+)>")


def json_float(x):
    """JSON has no inf/nan: write those as Python's repr string ("inf")."""
    return x if x == x and abs(x) != float("inf") else repr(x)


def parse_extra_networks(prompt):
    found = []

    def repl(m):
        items = m.group(2).split(":")
        positional = [it for it in items if len(it.split("=", 2)) != 2]
        named = dict(it.split("=", 2) for it in items if len(it.split("=", 2)) == 2)
        entry = {"kind": m.group(1), "items": items, "positional": positional, "named": named}
        try:
            te = float(positional[1]) if len(positional) > 1 else 1.0
            te = float(named.get("te", te))
            unet = float(positional[2]) if len(positional) > 2 else te
            unet = float(named.get("unet", unet))
            entry["lora"] = [positional[0], json_float(te), json_float(unet)]
        except (ValueError, IndexError):
            entry["lora"] = None
        found.append(entry)
        return ""

    return re.sub(re_extra_net, repl, prompt), found


EXTRA_PROMPTS = [
    "photo of sks <lora:my_face:0.8>, smiling", "<lora:a:0.5:0.25> <lora:b:te=0.3:unet=1.2> x",
    "<lora:c> <lora:d:unet=0.4> <lora:e:0.7:dyn=8>", "<hypernet:h1:1.0>text<lyco:l:1:2:3>",
    "<lora:my_face-000004:1>", "no tags <lora > <:x:1> <lora:> <lora:a>b>", "<lora:bad:abc>",
    "<lora:te=1:name:0.5>", "<lora:x:a=b=c:0.5>", "<Lora:UPPER:0.6><lora:ü:1>", "<lora:space name: 0.5 >",
    "<lora:a:1e-1:inf>", "<lora:n:0.5:0.6:0.7:0.8>", "nested <lora:a:<lora:b:1>>",
]


# ---------------------------------------------------------------- scheduling / alternation (lark grammar, v1.10)

schedule_parser = lark.Lark(r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
""")


def bracket_soup(rng, n):
    """Random short strings over the characters that matter to the schedule grammar."""
    pieces = ["a", "b", " ", "[", "]", "(", ")", ":", "|", "0.5", "3", "\\", "x y"]
    def soup(k):
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, k)))

    loose = [soup(10) for _ in range(n // 2)]
    grouped = [soup(3) + "[" + soup(6) + "]" + soup(3) for _ in range(n // 2)]
    return loose + grouped


def schedule_constructs(prompt):
    try:
        tree = schedule_parser.parse(prompt)
    except lark.exceptions.LarkError:
        return []
    kinds = {t.data for t in tree.iter_subtrees()} & {"scheduled", "alternate"}
    return sorted(kinds)


SCHEDULE_PROMPTS = [
    "test", "a [b:3]", "a [b: 3]", "a [[[b]]:2]", "[(a:2):3]", "a [b : c : 1] d", "a[b:[c:d:2]:1]e",
    "a [unbalanced", "a [b:.5] c", "a [{b|d{:.5] c", "((a][:b:c [d:3]", "[a|(b:1.1)]", "[fe|]male",
    "[fe|||]male", "[cat:dog:0.5]", "[cat:dog:10]", "[cat::0.5]", "[:dog:0.5]", "[a:b]", "[a:b:c]",
    "[a:b:c:0.5]", "(a:1.2) [b] ((c))", "[a]", "[[a]]", "a | b", "[a|b:0.5]", "(a|b)", "[a (b|c) d]",
    "photo, [red|blue] hair", "[a:1.5x]", "[a:1e3]", "[a:-2]", "[a:+0.5 ]", "[ a : b : 0.5 ]",
    "\\[a:b:0.5\\]", "[a\\:b:0.5]", "(x [y:0.3] z)", "[x (y:1.2):0.4]", "a: b: c", "(a:b:c)",
    "[a:(b:c):0.5]", "[[a|b]:0.5]", "[a|b] | c", "((a)", "a]", "[", "]", "[]", "[:]", "[|]", "[:0.5]",
    "[a::]", "text [a:b:0.5] more\\", "photo of sks woman, (smiling:1.2), [blurry]",
    "[a:3][(", "[ :3]](", "[a:3](", "[a:3]]",
]


# ---------------------------------------------------------------- AND / composable weights (positive prompts)

re_AND = re.compile(r"\bAND\b")
re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def composable(prompt):
    out = []
    for sub in re_AND.split(prompt):
        m = re_weight.search(sub)
        text, weight = m.groups() if m is not None else (sub, 1.0)
        out.append([text, float(weight) if weight is not None else 1.0])
    return out


COMPOSABLE_PROMPTS = [
    "a cat", "a cat AND a dog", "a cat:1.5 AND a dog :0.5", "a cat : 2.", "a cat:.5  ", "ANDROID and AND",
    "a (cat:1.2)", "a cat:1.2:3", "x AND", "AND", "line one\nline two:0.7", "x: -1", "x:+.5", "x:1e3",
]


def main():
    tok = load_tokenizer()
    comma_token = tok.get_vocab()[",</w>"]
    assert comma_token == 267
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    prompts = corpus()
    cases = [{"text": p, "ids": tok(p, add_special_tokens=False)["input_ids"]} for p in prompts]
    write("tokenizer_cases.json", {"vocab_size": len(tok.get_vocab()), "cases": cases})
    attn = [{"text": p, "parsed": safe(parse_prompt_attention, p)} for p in ATTENTION_EXTRA + prompts[:120]]
    write("attention_cases.json", attn)
    rng = random.Random(99)
    write("chunk_cases.json", [{"text": p, "chunks": tokenize_line(tok, p, comma_token)} for p in chunk_prompts(rng)])
    extra = []
    for p in EXTRA_PROMPTS:
        stripped, found = parse_extra_networks(p)
        extra.append({"text": p, "stripped": stripped, "tags": found})
    write("extra_network_cases.json", extra)
    schedule_prompts = SCHEDULE_PROMPTS + bracket_soup(random.Random(7), 1200)
    write("schedule_cases.json", [{"text": p, "constructs": schedule_constructs(p)} for p in schedule_prompts])
    write("composable_cases.json", [{"text": p, "parts": composable(p)} for p in COMPOSABLE_PROMPTS])


def safe(fn, arg):
    try:
        return fn(arg)
    except ValueError:
        return None


def write(name, obj):
    path = OUT_DIR / name
    path.write_text(json.dumps(obj, ensure_ascii=True, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
