#!/usr/bin/env python3
"""Records and summary for benchmarks/netns_compress.sh (gradient compression across namespace
hosts: time to accuracy, step time, bytes per step; dptrain codecs vs PyTorch DDP hooks).

  record-dptrain --metrics F.jsonl --stdout LOG --rc RC --window W --skip S --target A
                 --hosts N --batch B --wire-bytes X --tag JSON
      One line for a `dptrain train` run from its --metrics file: tta_s = wall_s - eval_s of the
      first "eval" record with test_acc >= A (training time to the accuracy, evaluations
      excluded; null if none reached it), tta_wall_s its wall_s; step_s = median over the "step"
      records (each a window of W steps) after the first window and after step S of
      global batch / img_s; bytes_step = median bytes_sent (rank 0's payload per step, real;
      other ranks' differ under an asymmetric algorithm such as tree),
      compress_ratio, t_comm_s, t_compute_s, t_comm_exposed_s, t_code_s (medians), comm_frac =
      t_comm_s / step_s; wire_bytes_step_run = X / N / steps (every host's interface, whole run).
  record-torch --log RANK0.log [--logs ALL...] --rc RC --hosts N --wire-bytes X --tag JSON
      The same fields from benchmarks/torch_ddp_fmnist.py's rank-0 result line (PyTorch DDP, or
      Horovod's contenders): bytes_step is its tx_bytes_step (rank 0's interface, headers
      included: bytes_kind "wire"), nominal_bytes_step the hook's payload.
  brief FILE        the last line in a few words (the script's progress lines)
  summary [--session S] [--label SESSION/CONTENDER=NAME]... FILE
      --label renames a contender in one session's rows (a codec whose code changed between
      sessions is then its own row, e.g. 20261204T021054Z/dptrain:sign=dptrain:sign-per-chunk).
      Per rate and contender, medians over rounds: time to accuracy (and how many rounds reached
      it), step time, MB/step, the fp32 all-reduce's share of the step; speed-up to accuracy vs
      dptrain's fp32 (none) and vs the contender's own fp32; the ratio of the best dptrain codec
      to PyTorch's best hook; issue 16's targets at 200 Mbit/s.
"""
import argparse
import json
import re
import statistics
import sys


def load_jsonl(path):
    rows = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return rows


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [x for x in f.read().strip().splitlines() if x.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[:400]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rnd(x, d):
    return None if x is None else round(x, d)


def record_dptrain(a):
    out = json.loads(a.tag)
    out.update({"impl": "dptrain", "codec": out["contender"].split(":", 1)[1]})
    rows = load_jsonl(a.metrics)
    evals = [r for r in rows if r.get("kind") == "eval"]
    steps = [r for r in rows if r.get("kind") == "step"]
    final = [r for r in rows if r.get("kind") == "final"]
    if a.rc != 0 or not final:
        out["error"] = f"exit {a.rc}: {tail(a.stdout)}"
        return out
    hit = next((e for e in evals if e["test_acc"] >= a.target), None)
    n_steps = hit["step"] if hit else max([r["step"] for r in steps + evals] or [0])
    gb = a.batch * a.hosts
    timed = [r for r in steps if r["step"] > a.window and r["step"] - a.window >= a.skip] or steps
    step_s = med([gb / r["img_s"] for r in timed if r.get("img_s")])
    t_comm = med([r.get("t_comm_s") for r in timed])
    out.update({
        "reached": hit is not None, "steps": n_steps,
        "tta_s": rnd(hit["wall_s"] - hit["eval_s"], 3) if hit else None,
        "tta_wall_s": hit["wall_s"] if hit else None,
        "test_acc": evals[-1]["test_acc"] if evals else final[0].get("test_acc"),
        "wall_s": final[0].get("wall_s"), "eval_s": evals[-1]["eval_s"] if evals else 0,
        "evals": len(evals), "step_s": rnd(step_s, 6), "step_windows": len(timed),
        "bytes_step": rnd(med([r.get("bytes_sent") for r in timed]), 0), "bytes_kind": "payload",
        "compress_ratio": med([r.get("compress_ratio") for r in timed]),
        "t_comm_s": rnd(t_comm, 6), "t_compute_s": rnd(med([r.get("t_compute_s") for r in timed]), 6),
        "t_comm_exposed_s": rnd(med([r.get("t_comm_exposed_s") for r in timed]), 6),
        "t_code_s": rnd(med([r.get("t_code_s") for r in timed]), 6),
        "comm_frac": rnd(t_comm / step_s, 4) if t_comm is not None and step_s else None,
        "wire_bytes_step_run": round(a.wire_bytes / a.hosts / n_steps) if n_steps else None,
    })
    return out


def record_torch(a):
    out = json.loads(a.tag)
    out.update({"impl": out["contender"].split(":", 1)[0], "hook": out["contender"].split(":", 1)[1]})
    rows = load_jsonl(a.log)
    res = [r for r in rows if r.get("bench") == "ddp_tta"]
    if a.rc != 0 or not res:
        bad = next((p for p in a.logs if "Error" in tail(p, 8) or "error" in tail(p, 8)), a.log)
        out["error"] = f"exit {a.rc}: {bad}: {tail(bad)}"
        return out
    r = res[-1]
    if out["contender"].startswith("horovod:"):
        out["impl"], out["torch"] = "horovod", r["impl"]
    else:
        out["impl"] = r["impl"]
    for k in ("reached", "steps", "tta_s", "tta_wall_s", "test_acc", "wall_s", "eval_s",
              "step_s", "step_windows", "nominal_bytes_step", "start_iter_effective"):
        out[k] = r.get(k)
    out["evals"] = sum(1 for x in rows if x.get("kind") == "eval")
    out["bytes_step"] = r.get("tx_bytes_step")
    out["bytes_kind"] = "wire"
    n = r.get("steps") or 0
    out["wire_bytes_step_run"] = round(a.wire_bytes / a.hosts / n) if n else None
    return out


def brief(a):
    rows = load_jsonl(a.file)
    if not rows:
        print("no result")
        return
    r = rows[-1]
    if "error" in r:
        print("FAILED " + r["error"][:200])
        return
    tta = f"tta {r['tta_s']:.1f} s at step {r['steps']}" if r.get("reached") else \
        f"not reached in {r.get('steps')} steps (acc {r.get('test_acc')})"
    mb = r.get("bytes_step")
    print(f"{tta}, step {r.get('step_s') or 0:.4f} s, "
          f"{(mb or 0) / 1e6:.3f} MB/step {r.get('bytes_kind')}"
          + (f", comm {r['comm_frac']:.0%} of the step" if r.get("comm_frac") else ""))


def order(c):
    impl, _, v = c.partition(":")
    names = ["none", "fp16", "bf16", "powersgd", "topk", "sign"]
    base = re.split(r"[:+]", v)[0]
    return (impl != "dptrain", names.index(base) if base in names else len(names), v)


def rate_key(r):
    m = re.match(r"([0-9.]+)([kmgt]?)", r.lower())
    mul = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
    return float(m.group(1)) * mul[m.group(2)] if m else 0


def summary(a):
    rows = [r for r in load_jsonl(a.file) if r.get("contender")
            and (a.session is None or r.get("session") == a.session)]
    for lab in a.label:
        key, _, name = lab.partition("=")
        sess, _, cont = key.partition("/")
        if not name or not cont:
            print(f"summarize_netns_compress: --label {lab}: want SESSION/CONTENDER=NAME")
            return 2
        for r in rows:
            if r.get("session") == sess and r.get("contender") == cont:
                r["contender"] = name
    if not rows:
        print("summarize_netns_compress: no rows" + (f" of session {a.session}" if a.session else ""))
        return 1
    sessions = sorted({r["session"] for r in rows})
    print(f"sessions {', '.join(sessions)}; {rows[0].get('hosts')} hosts, mtu {rows[0].get('mtu')}, "
          f"batch {rows[0].get('batch')}/rank (global {rows[0].get('global_batch')}), lr "
          f"{rows[0].get('lr')}, target test accuracy {rows[0].get('target')} (evaluated every "
          f"{rows[0].get('eval_every')} steps, at most {rows[0].get('max_steps')})")
    print("tta: training time to the target, evaluations excluded (median over the rounds that "
          "reached it; n/N rounds). MB/step: rank 0's per step (dptrain: the payload it handed "
          "the transport, which differs between ranks under an asymmetric algorithm such as "
          "tree; PyTorch, Horovod: its interface's tx bytes, headers included). wire MB/step "
          "(run): every host's interface over the whole run (start-up, dptrain's calibration and "
          "evaluations included) / hosts / steps. comm: the all-reduce's share of the step "
          "(dptrain's t_comm_s / step time).\n")
    errors = [r for r in rows if "error" in r]
    status = 0
    for rate in sorted({r["rate"] for r in rows}, key=rate_key):
        rr = [r for r in rows if r["rate"] == rate and "error" not in r]
        stats = {}
        for c in sorted({r["contender"] for r in rr}, key=order):
            cr = [r for r in rr if r["contender"] == c]
            reached = [r for r in cr if r.get("reached")]
            stats[c] = {
                "tta": med([r["tta_s"] for r in reached]), "n": len(reached), "N": len(cr),
                "tta_wall": med([r.get("tta_wall_s") for r in reached]),
                "steps": med([r["steps"] for r in reached]) if reached else None,
                "step": med([r.get("step_s") for r in cr]),
                "mb": med([r.get("bytes_step") for r in cr]),
                "nominal": med([r.get("nominal_bytes_step") for r in cr]),
                "wire_run": med([r.get("wire_bytes_step_run") for r in cr]),
                "comm": med([r.get("comm_frac") for r in cr]),
                "acc": med([r.get("test_acc") for r in cr]),
            }
        print(f"### {rate}\n")
        print("| contender | tta (s) | rounds | steps to target | step (ms) | MB/step | wire MB/step "
              "(run) | comm | × vs dptrain fp32 | × vs own fp32 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        base = stats.get("dptrain:none", {}).get("tta")
        for c, s in stats.items():
            own = stats.get(c.split(":")[0] + ":none", {}).get("tta")
            f = lambda x, d=1: "—" if x is None else f"{x:.{d}f}"
            print(f"| {c} | {f(s['tta'])} | {s['n']}/{s['N']} | {f(s['steps'], 0)} | "
                  f"{f(s['step'] and s['step'] * 1e3)} | {f(s['mb'] and s['mb'] / 1e6, 3)} | "
                  f"{f(s['wire_run'] and s['wire_run'] / 1e6, 3)} | "
                  f"{'—' if s['comm'] is None else format(s['comm'], '.0%')} | "
                  f"{f(base / s['tta'], 2) if base and s['tta'] else '—'} | "
                  f"{f(own / s['tta'], 2) if own and s['tta'] else '—'} |")
        ours = {c: s for c, s in stats.items() if c.startswith("dptrain:") and s["tta"]}
        theirs = {c: s for c, s in stats.items() if c.startswith("pytorch:") and s["tta"]}
        hvd = {c: s for c, s in stats.items() if c.startswith("horovod:") and s["tta"]}
        print()
        if ours:
            bo = min(ours, key=lambda c: ours[c]["tta"])
            line = f"best dptrain codec: {bo} ({ours[bo]['tta']:.1f} s)"
            if base:
                line += f", {base / ours[bo]['tta']:.2f}× sooner than fp32"
            if theirs:
                bt = min(theirs, key=lambda c: theirs[c]["tta"])
                line += (f"; PyTorch's best hook: {bt} ({theirs[bt]['tta']:.1f} s); "
                         f"dptrain best / PyTorch best: {theirs[bt]['tta'] / ours[bo]['tta']:.2f}× sooner")
            for c in sorted(hvd):
                line += f"; {c}: {hvd[c]['tta'] / ours[bo]['tta']:.2f}× the best dptrain's time"
            print(line)
            if rate_key(rate) == 200e6 and base:
                fp16 = stats.get("dptrain:fp16", {}).get("tta")
                checks = [("best codec ≥ 3× sooner than fp32", base / ours[bo]["tta"], 3.0)]
                if fp16:
                    checks.append(("fp16 ≥ 1.6× sooner than fp32", base / fp16, 1.6))
                if theirs:
                    checks.append(("best dptrain ≥ 1.5× sooner than PyTorch's best hook",
                                   theirs[bt]["tta"] / ours[bo]["tta"], 1.5))
                for what, got, want in checks:
                    print(f"target {what}: {got:.2f}× — {'met' if got >= want else 'NOT met'}")
            print()
    for r in errors:
        print(f"FAILED round {r.get('round')} {r.get('rate')} {r.get('contender')}: {r['error']}")
        status = 1
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("record-dptrain")
    for k in ("--metrics", "--stdout", "--tag"):
        d.add_argument(k, required=True)
    for k in ("--rc", "--window", "--skip", "--hosts", "--batch", "--wire-bytes"):
        d.add_argument(k, type=int, required=True)
    d.add_argument("--target", type=float, required=True)
    t = sub.add_parser("record-torch")
    t.add_argument("--log", required=True)
    t.add_argument("--logs", nargs="*", default=[])
    t.add_argument("--tag", required=True)
    for k in ("--rc", "--hosts", "--wire-bytes"):
        t.add_argument(k, type=int, required=True)
    b = sub.add_parser("brief")
    b.add_argument("file")
    s = sub.add_parser("summary")
    s.add_argument("--session")
    s.add_argument("--label", action="append", default=[])
    s.add_argument("file")
    a = ap.parse_args()
    if a.cmd == "record-dptrain":
        print(json.dumps(record_dptrain(a)))
    elif a.cmd == "record-torch":
        print(json.dumps(record_torch(a)))
    elif a.cmd == "brief":
        brief(a)
    else:
        sys.exit(summary(a))


if __name__ == "__main__":
    main()
