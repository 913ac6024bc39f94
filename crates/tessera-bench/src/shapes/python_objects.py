# tessera-bench, shape `python`: many small, short-lived objects in one
# thread. Run as `PYTHONMALLOC=malloc PYTHONHASHSEED=0 python3 -S
# objects.py ROUNDS`; prints a checksum that must be the same on every
# allocator.
import json
import re
import sys

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu", "qi", "ba"]
MASK = (1 << 64) - 1


def words(n, seed):
    x = seed
    out = []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
        k = 1 + (x >> 61) % 4
        out.append("".join(SYLLABLES[(x >> (7 * j + 3)) % 12] for j in range(k)))
    return out


def build(depth):
    if depth == 0:
        return None
    return (build(depth - 1), depth, build(depth - 1))


def count(tree):
    if tree is None:
        return 0
    return 1 + count(tree[0]) + count(tree[2])


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y


def one_round(r):
    total = 0
    ws = words(20000, r + 1)
    freq = {}
    for w in ws:
        freq[w] = freq.get(w, 0) + 1
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    total += sum(c * len(w) for w, c in ranked[:100])
    records = [
        {"id": i, "word": w, "tags": [w[:2], w[-2:]], "pos": (i % 7, i % 11)}
        for i, w in enumerate(ws[:6000])
    ]
    text = json.dumps(records)
    back = json.loads(text)
    total += len(text) + sum(rec["pos"][0] for rec in back)
    joined = " ".join(ws[:10000])
    total += len(re.findall(r"\b(?:ka|mi)\w*", joined))
    total += sum(len(s) for s in joined.split("sa") if s)
    total += count(build(13))
    points = [Point(i, i * i % 97) for i in range(20000)]
    total += sum(p.y for p in points if p.x % 3 == 0)
    pairs = {(a, b): a * b for a in range(60) for b in range(60)}
    total += sum(v for (a, b), v in pairs.items() if (a + b) % 5 == 0)
    return total


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    total = 0
    for r in range(rounds):
        total = (total * 31 + one_round(r)) & MASK
    print("checksum", total)


main()
