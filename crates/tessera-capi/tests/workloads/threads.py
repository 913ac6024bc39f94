"""A multi-threaded Python workload for the LD_PRELOAD tests: dicts, lists,
strings, json and re, from 8 threads. Deterministic output: each thread
prints a digest of what it built. Run it with PYTHONMALLOC=malloc so that
every object goes through the C allocator."""
import hashlib
import json
import re
import threading

ROUNDS = 120000


def work(seed, results):
    state = seed
    table = {}
    recent = []
    lines = []
    for i in range(ROUNDS):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        key = "k%x" % (state >> 44)
        table[key] = table.get(key, 0) + 1
        recent.append(str(state)[: 4 + (state >> 61)] * (1 + (state >> 62)))
        if len(recent) > 3000:
            del recent[:1500]
        if i % 50 == 0:
            lines.append({"i": i, "key": key, "words": recent[-5:], "n": len(table)})
    text = json.dumps(lines, sort_keys=True)
    back = json.loads(text)
    keys = re.findall(r'"key": "k([0-9a-f]+)"', text)
    swapped = re.sub(r"(\d)(\d)", r"\2\1", " ".join(recent))
    words = sorted(set(re.split(r"[^0-9]+", swapped)) - {""})
    digest = hashlib.sha256((swapped + text).encode()).hexdigest()[:20]
    results[seed] = (len(table), sum(table.values()), len(back), len(keys), len(words), digest)


def main():
    results = {}
    threads = [threading.Thread(target=work, args=(s, results)) for s in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in sorted(results):
        print(seed, *results[seed])


main()
