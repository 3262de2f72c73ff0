"""One command that proves the GPU path on a machine with one NVIDIA GPU and a bare Python.

    PYTHONPATH=src python bench/gpu_check.py OUTDIR [--device cuda] [--quick] [--budget-s 420]
    PYTHONPATH=src python bench/gpu_check.py --prepare-data     # once, where ../shared/data is: ISBI sections
                                                               # into results/gpu_check_data/ (carry it)

Needs only torch, numpy, tifffile, pandas and pyyaml (no zarr, jsonschema, snakemake, waterz,
no network). Writes OUTDIR/gpu_check.json (everything) and OUTDIR/gpu_check.csv (one row
per measurement: part, arch, precision, metric, value). Parts:

* train: every registered architecture at paper size (config/zoo.yaml's net; its first
  entry per arch) for a few dozen steps of forward + backward + Adam step under autocast,
  bf16 and fp16 (with GradScaler); GAN archs add their critic's step, SR3 trains on the
  diffusion loss and samples one tile (DDIM-50). steps/s and peak GPU memory.
* affinity: the affinity U-Net's training step (steps/s, peak memory).
* infer: tiled inference through the infer rule's own code path (srseg.infer.super_resolve)
  for every architecture on an 8 x 1024 x 1024 LR volume at x4 (fewer sections where a model
  is slow, recorded): output Mpx/s, ratio to an untiled forward pass of the same model and
  to bicubic.
* agreement: CPU vs CUDA inference of paper-size EDSR (max |difference|, fp32 without TF32,
  and under autocast).
* isbi: a short paper-size EDSR training on ISBI 2012 sections (HR) and their bicubic x4
  LR: steps/s, loss curve, validation PSNR reached vs bicubic's.

--device cpu --quick runs the same code on tiny nets and sizes in under a minute (make test
rehearses it: tests/test_gpu_check.py). Every part records its own error instead of
stopping the others.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from srseg.infer import super_resolve  # noqa: E402
from srseg.models import ARCHS, build_model  # noqa: E402

DATA = ROOT / "results" / "gpu_check_data" / "isbi_sections.tif"
SHARED_ISBI = ROOT.parent / "shared" / "data" / "isbi2012" / "raw.tif"

#: --quick nets (CPU rehearsal): every arch, tiny
TINY = {
    "srcnn": {"features": [8, 4]},
    "edsr": {"n_feats": 8, "n_blocks": 1},
    "rcan": {"n_feats": 8, "n_groups": 1, "n_blocks": 1, "reduction": 4},
    "swinir": {"embed_dim": 8, "depths": [1], "heads": 2, "window": 4, "upsample_feats": 8},
    "edt": {"embed_dim": 8, "depths": [2], "heads": 2, "window": [2, 6], "num_feat": 4, "head_depth": 1},
    "emsr": {"channels": 8, "n_basic": 1, "n_res": 1, "n_path": 2, "heads": 2},
    "pssr": {"features": 8, "depth": 2, "n_blocks": 1},
    "wgan": {"n_feats": 8, "n_blocks": 1},
    "esrgan": {"n_feats": 8, "n_blocks": 1, "growth": 4},
    "sr3": {"channels": 8, "mults": [1, 2], "res_blocks": 1, "attn_res": [4], "image_size": 8, "timesteps": 10},
}
TINY_CRITIC = {"wgan": {"channels": [8, 16]}, "esrgan": {"n_feats": 8}}


class Check:
    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.rows: list[dict] = []
        self.info: dict = {"errors": {}}
        self.t0 = time.perf_counter()

    def row(self, part, arch, precision, metric, value):
        self.rows.append({"part": part, "arch": arch, "precision": precision, "metric": metric, "value": value})

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def part(self, name, fn):
        t = time.perf_counter()
        try:
            self.info[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one failing part must not hide the others
            self.info["errors"][name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            traceback.print_exc()
        self.info.setdefault("part_seconds", {})[name] = time.perf_counter() - t
        print(f"[gpu_check] {name}: {time.perf_counter() - t:.1f}s", flush=True)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self):
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self):
        return torch.cuda.max_memory_allocated(self.device) / 1e9 if self.cuda else None


def specs(quick: bool) -> dict[str, dict]:
    """arch -> {"arch", "net", "critic"}: config/zoo.yaml's first entry per arch (paper size), or TINY."""
    import yaml

    zoo = yaml.safe_load((ROOT / "config" / "zoo.yaml").read_text())["models"]
    out = {}
    for arch in ARCHS:
        if quick:
            out[arch] = {"arch": arch, "net": TINY.get(arch, {}), "critic": TINY_CRITIC.get(arch, {})}
            continue
        entry = next((m for m in zoo.values() if m.get("arch") == arch and not m.get("context")), {"arch": arch})
        out[arch] = {"arch": arch, "net": dict(entry.get("net") or {}), "critic": dict(entry.get("critic") or {})}
    return out


def precisions(check: Check) -> list[str]:
    return ["bf16", "fp16"] if check.cuda else ["fp32"]


def amp_ctx(check: Check, precision: str):
    import contextlib

    if precision == "fp32" or not check.cuda:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# --------------------------------------------------------------------------- training steps


def train_part(check: Check) -> dict:
    a = check.args
    scale, batch, patch = 4, a.batch, a.patch
    steps = a.steps
    out = {}
    for arch, spec in specs(a.quick).items():
        if arch == "bicubic":
            continue
        for precision in precisions(check):
            if check.left() < a.budget_s * 0.55:  # keep time for the other parts
                out.setdefault("skipped", []).append(f"{arch}/{precision}")
                continue
            torch.manual_seed(0)
            model = build_model({"arch": arch, "net": spec["net"]}, scale).to(check.device).train()
            if check.cuda:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.Adam(model.parameters(), 1e-4)
            scaler = torch.amp.GradScaler("cuda", enabled=check.cuda and precision == "fp16")
            critic = d_opt = None
            if hasattr(type(model), "build_critic"):
                critic = type(model).build_critic(**spec["critic"]).to(check.device).train()
                d_opt = torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9))
            b, p = (max(1, batch // 4), max(8, patch * 2 // 3)) if arch == "sr3" else (batch, patch)
            lr = torch.rand(b, 1, p, p, device=check.device)
            hr = torch.rand(b, 1, p * scale, p * scale, device=check.device)
            losses = []
            step = lambda: sr_step(check, arch, precision, model, critic, opt, d_opt, scaler, lr, hr)  # noqa: E731, B023
            check.reset_peak()
            for _ in range(2):  # warm-up: cuDNN autotuning, allocator
                step()
            check.sync()
            t = time.perf_counter()
            for _ in range(steps):
                losses.append(step())
            check.sync()
            sps = steps / (time.perf_counter() - t)
            rec = {
                "steps_per_s": sps,
                "peak_gpu_gb": check.peak_gb(),
                "batch": b,
                "lr_patch": p,
                "critic": critic is not None,
                "params_m": sum(q.numel() for q in model.parameters()) / 1e6,
                "final_loss": float(losses[-1]),
                "finite": bool(all(torch.isfinite(x) for x in losses)),
            }
            if arch == "sr3" and precision == precisions(check)[0]:
                model.eval()
                tile = 64 if not a.quick else 8
                with torch.no_grad(), amp_ctx(check, precision):
                    lt = torch.rand(1, 1, tile, tile, device=check.device)
                    check.sync()
                    ts = time.perf_counter()
                    steps_s = 50 if not a.quick else 2
                    y = model.sample(lt, steps=steps_s, sampler="ddim")
                    check.sync()
                rec.update(sample_tile=tile, sample_steps=steps_s, sample_seconds=time.perf_counter() - ts)
                rec["sample_finite"] = bool(torch.isfinite(y).all())
                check.row("train", arch, precision, "sample_tile_seconds", rec["sample_seconds"])
            out[f"{arch}/{precision}"] = rec
            check.row("train", arch, precision, "steps_per_s", sps)
            check.row("train", arch, precision, "peak_gpu_gb", rec["peak_gpu_gb"])
    return out


def sr_step(check, arch, precision, model, critic, opt, d_opt, scaler, lr, hr) -> torch.Tensor:
    """One training step: the critic's (GAN archs, on the generator's detached output), then the model's."""
    if critic is not None:
        with torch.no_grad(), amp_ctx(check, precision):
            fake = model(lr)
        with amp_ctx(check, precision):
            d_loss = F.softplus(critic(fake.float())).mean() + F.softplus(-critic(hr)).mean()
        d_opt.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        scaler.step(d_opt)
    with amp_ctx(check, precision):
        if arch == "sr3":
            eps_pred, eps = model.diffusion_pair(lr, hr)
            loss = (eps_pred.float() - eps).abs().mean()
        else:
            sr = model(lr)
            loss = (sr.float() - hr).abs().mean()
            if critic is not None:
                loss = loss + 1e-3 * F.softplus(-critic(sr.float())).mean()
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach()


def affinity_part(check: Check) -> dict:
    from srseg.affinity import AffinityUNet, affinity_loss

    a = check.args
    out = {}
    for precision in precisions(check):
        torch.manual_seed(0)
        net = AffinityUNet(dim=3, features=a.aff_features, depth=3).to(check.device).train()
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=check.cuda and precision == "fp16")
        z, p = (4, 16) if a.quick else (8, 128)
        x = torch.rand(a.batch // 2 or 1, 1, z, p, p, device=check.device)
        tgt = (torch.rand(x.shape[0], 3, z, p, p, device=check.device) > 0.5).float()

        def step(net=net, opt=opt, scaler=scaler, x=x, tgt=tgt, precision=precision):
            with amp_ctx(check, precision):
                loss = affinity_loss(net(x), tgt)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        check.reset_peak()
        step()
        check.sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        check.sync()
        sps = a.steps / (time.perf_counter() - t)
        out[precision] = {"steps_per_s": sps, "peak_gpu_gb": check.peak_gb(), "patch": [z, p, p], "batch": x.shape[0]}
        check.row("affinity", "affinity_unet", precision, "steps_per_s", sps)
    return out


# --------------------------------------------------------------------------- inference


def untiled(model, vol, device, precision, check) -> None:
    from srseg.infer import section_noise

    model = model.to(device).eval()
    if check.cuda:
        model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for k in range(vol.shape[0]):
            x = torch.from_numpy(vol[k : k + 1])[None].to(device)
            noise = section_noise(model, vol.shape[1], vol.shape[2], 0, k, device)
            with amp_ctx(check, precision):
                y = model(x) if noise is None else model(x, noise=noise[None])
            y.float().clamp_(0, 1).cpu()


def timed(fn, check) -> float:
    check.sync()
    t = time.perf_counter()
    fn()
    check.sync()
    return time.perf_counter() - t


def infer_part(check: Check) -> dict:
    a = check.args
    scale = 4
    z, side = a.infer_size
    rng = np.random.default_rng(0)
    vol = rng.random((z, side, side), dtype=np.float32)
    prec = precisions(check)[0]
    out = {}
    for arch, spec in specs(a.quick).items():
        net = dict(spec["net"])
        if arch == "sr3":
            net.update(sampler="ddim", sample_steps=a.sr3_steps)  # ancestral-2000 would take hours at this size
        torch.manual_seed(0)
        model = build_model({"arch": arch, "net": net}, scale)
        run = lambda v, m=model: super_resolve(  # noqa: E731
            m,
            v,
            scale,
            a.tile,
            a.overlap,
            a.infer_batch,
            check.device,
            amp=check.cuda,
            out_dtype="uint8",
            progress=False,
            compile=a.compile,
        )
        # one section first (warm-up: autotuning, compile), then as many sections as the budget allows
        run(vol[:1, : min(side, 2 * a.tile), : min(side, 2 * a.tile)])
        one = timed(lambda r=run: r(vol[:1]), check)
        per_arch = max(5.0, min(a.infer_budget_s, check.left() - 60) / 2)
        n = int(max(1, min(z, per_arch // max(one, 1e-6))))
        sec = timed(lambda r=run, n=n: r(vol[:n]), check) if n > 1 else one
        mpx = n * side * side * scale**2 / 1e6
        rec = {"sections": n, "lr_side": side, "seconds": sec, "out_mpix_per_s": mpx / sec, "precision": prec}
        # untiled forward of the same model on the same sections (smaller sections where it is slow)
        nu = max(1, min(n, 2))
        try:
            untiled(model, vol[:1, :64, :64], check.device, prec, check)
            tu = timed(lambda m=model, nu=nu: untiled(m, vol[:nu], check.device, prec, check), check)
            rec["untiled_out_mpix_per_s"] = nu * side * side * scale**2 / 1e6 / tu
            rec["tiled_over_untiled"] = rec["out_mpix_per_s"] / rec["untiled_out_mpix_per_s"]
        except torch.OutOfMemoryError as exc:
            rec["untiled_error"] = f"out of memory: {str(exc)[:120]}"
            torch.cuda.empty_cache()
        out[arch] = rec
        check.row("infer", arch, prec, "out_mpix_per_s", rec["out_mpix_per_s"])
        if "tiled_over_untiled" in rec:
            check.row("infer", arch, prec, "tiled_over_untiled", rec["tiled_over_untiled"])
        del model
    bic = out.get("bicubic", {}).get("out_mpix_per_s")
    for arch, rec in out.items():
        if bic:
            rec["relative_to_bicubic"] = rec["out_mpix_per_s"] / bic
            check.row("infer", arch, rec["precision"], "relative_to_bicubic", rec["relative_to_bicubic"])
    out["settings"] = {
        "tile": a.tile,
        "overlap": a.overlap,
        "batch": a.infer_batch,
        "scale": scale,
        "compile": a.compile,
    }
    return out


def agreement_part(check: Check) -> dict:
    if not check.cuda:
        return {"skipped": "no CUDA device: CPU-CUDA agreement needs one"}
    net = {} if check.args.quick else {"n_feats": 64, "n_blocks": 16}
    torch.manual_seed(0)
    model = build_model({"arch": "edsr", "net": net}, 4).eval()
    vol = np.random.default_rng(1).random((1, 128, 128), dtype=np.float32)
    kw = dict(tile=64, overlap=8, batch=4, progress=False)
    cpu = super_resolve(model, vol, 4, device="cpu", amp=False, **kw)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        fp32 = super_resolve(model, vol, 4, device=check.device, amp=False, **kw)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    amp = super_resolve(model, vol, 4, device=check.device, amp=True, **kw)
    out = {
        "fp32_max_abs_diff": float(np.abs(cpu - fp32).max()),
        "autocast_max_abs_diff": float(np.abs(cpu - amp).max()),
    }
    for k, v in out.items():
        check.row("agreement", "edsr", k.split("_")[0], "max_abs_diff", v)
    return out


# --------------------------------------------------------------------------- a short real training


def isbi_volume(check: Check) -> tuple[np.ndarray, str]:
    import tifffile

    for path in (check.args.isbi, DATA, SHARED_ISBI):
        if path and Path(path).exists():
            vol = tifffile.imread(path)
            vol = vol.astype(np.float32) / (255.0 if vol.dtype == np.uint8 else 65535.0)
            return vol, str(path)
    rng = np.random.default_rng(0)  # no ISBI data here: a smooth synthetic stand-in (recorded as such)
    yy, xx = np.mgrid[0:256, 0:256] / 256
    vol = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (8 * xx + 5 * yy + k / 7)) for k in range(4)])
    return (vol + rng.normal(0, 0.02, vol.shape)).clip(0, 1).astype(np.float32), "synthetic"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a.astype(np.float64) - b) ** 2), 1e-12)))


def isbi_part(check: Check) -> dict:
    a = check.args
    hr, source = isbi_volume(check)
    scale = 4
    hr = hr[:, : hr.shape[1] // scale * scale, : hr.shape[2] // scale * scale]
    t = torch.from_numpy(hr)[:, None]
    lr = F.interpolate(t, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    lr = lr[:, 0].numpy()
    n_val = max(1, hr.shape[0] // 5)
    tr_lr, tr_hr, va_lr, va_hr = lr[:-n_val], hr[:-n_val], lr[-n_val:], hr[-n_val:]
    net = TINY["edsr"] if a.quick else {"n_feats": 64, "n_blocks": 16}
    torch.manual_seed(0)
    model = build_model({"arch": "edsr", "net": net}, scale).to(check.device).train()
    if check.cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-4 if not a.quick else 1e-3)
    prec = precisions(check)[0]
    scaler = torch.amp.GradScaler("cuda", enabled=check.cuda and prec == "fp16")
    rng = np.random.default_rng(0)
    p, b = a.patch, a.batch
    curve = []
    budget = min(a.isbi_seconds, max(10.0, check.left() - 30))
    t0, step = time.perf_counter(), 0
    while step < a.isbi_steps and time.perf_counter() - t0 < budget:
        ks = rng.integers(0, tr_lr.shape[0], b)
        ys = rng.integers(0, tr_lr.shape[1] - p + 1, b)
        xs = rng.integers(0, tr_lr.shape[2] - p + 1, b)
        x = np.stack([tr_lr[k, y : y + p, xx : xx + p] for k, y, xx in zip(ks, ys, xs)])[:, None]
        yv = np.stack(
            [tr_hr[k, y * scale : (y + p) * scale, xx * scale : (xx + p) * scale] for k, y, xx in zip(ks, ys, xs)]
        )[:, None]
        x, yv = torch.from_numpy(x).to(check.device), torch.from_numpy(yv).to(check.device)
        with amp_ctx(check, prec):
            loss = (model(x).float() - yv).abs().mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        if step % max(1, a.log_every) == 0 or step == 1:
            curve.append([step, float(loss)])
    check.sync()
    seconds = time.perf_counter() - t0
    model.eval()
    sr = super_resolve(model, va_lr, scale, 64, 8, 8, check.device, amp=check.cuda, progress=False)
    bic = super_resolve(build_model({"arch": "bicubic"}, scale), va_lr, scale, 64, 8, 8, "cpu", progress=False)
    out = {
        "data": source,
        "hr_shape": list(hr.shape),
        "validation_sections": n_val,
        "steps": step,
        "seconds": seconds,
        "steps_per_s": step / seconds,
        "batch": b,
        "lr_patch": p,
        "precision": prec,
        "loss_curve": curve,
        "psnr_sr": psnr(sr, va_hr),
        "psnr_bicubic": psnr(bic, va_hr),
    }
    check.row("isbi", "edsr", prec, "steps_per_s", out["steps_per_s"])
    check.row("isbi", "edsr", prec, "psnr_sr", out["psnr_sr"])
    check.row("isbi", "bicubic", "fp32", "psnr", out["psnr_bicubic"])
    return out


def prepare_data(sections: int = 12) -> Path:
    """A few ISBI 2012 sections into results/gpu_check_data/ (git-ignored: carry it to the GPU machine)."""
    import tifffile

    vol = tifffile.imread(SHARED_ISBI)[:sections]
    DATA.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(DATA, vol, compression="zlib")
    return DATA


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", help="where gpu_check.json and gpu_check.csv go")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny nets and sizes (the CPU rehearsal)")
    ap.add_argument("--prepare-data", action="store_true", help="copy ISBI sections for the GPU machine, then exit")
    ap.add_argument("--budget-s", type=float, default=None, help="overall time budget (default 420, quick 50)")
    ap.add_argument("--parts", nargs="*", default=["train", "affinity", "infer", "agreement", "isbi"])
    ap.add_argument("--isbi", default=None, help="HR TIFF for the ISBI part (default: the prepared sections)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the models for tiled inference")
    args = ap.parse_args(argv)
    if args.prepare_data:
        print(prepare_data())
        return {}
    if not args.outdir:
        ap.error("OUTDIR is required")
    q = args.quick
    args.budget_s = args.budget_s or (50.0 if q else 420.0)
    args.steps = 2 if q else 20
    args.batch, args.patch = (2, 12) if q else (16, 48)
    args.aff_features = 4 if q else 16
    args.infer_size = (2, 48) if q else (8, 1024)
    args.tile, args.overlap, args.infer_batch = (16, 4, 4) if q else (128, 8, 16)
    args.sr3_steps = 2 if q else 10
    args.infer_budget_s = 2.0 if q else 12.0
    args.isbi_steps, args.isbi_seconds, args.log_every = (4, 5.0, 1) if q else (3000, 60.0, 25)
    torch.set_num_threads(1 if q else max(1, torch.get_num_threads()))
    torch.backends.cudnn.benchmark = True
    check = Check(args)
    check.info["env"] = {
        "device": str(check.device),
        "device_name": torch.cuda.get_device_name(check.device) if check.cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": bool(check.cuda and torch.cuda.is_bf16_supported()),
        "quick": q,
        "budget_s": args.budget_s,
    }
    parts = {
        "train": train_part,
        "affinity": affinity_part,
        "infer": infer_part,
        "agreement": agreement_part,
        "isbi": isbi_part,
    }
    for name in args.parts:
        check.part(name, lambda fn=parts[name]: fn(check))
    check.info["seconds"] = time.perf_counter() - check.t0
    check.info["rows"] = check.rows
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(check.info, indent=2, default=_jsonable) + "\n")
    import pandas as pd

    pd.DataFrame(check.rows, columns=["part", "arch", "precision", "metric", "value"]).to_csv(
        out / "gpu_check.csv", index=False
    )
    print(
        f"[gpu_check] {len(check.rows)} rows, {len(check.info['errors'])} errors, {check.info['seconds']:.0f}s -> {out}"
    )
    return check.info


def _jsonable(o):
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


if __name__ == "__main__":
    main()
