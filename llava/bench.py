"""Long-video benchmark: this implementation against a transcription of the released algorithm, in one run.

    python -m llava.bench [--quick] [--cache-dir outputs/bench]

Measures, on this machine:
1. vision-side peak memory at several frame counts N with a scaled-down config (SigLIP grid 27x27 = 729 patches,
   projector width D = 256, float32), each N and path in its own subprocess; reports bytes per extra frame (slope of
   a least-squares line through the peaks) for both paths and their ratio;
2. DKS selection time at N = 10,000, K = 32 (best of several runs, same keyframes checked);
3. decoding at 1 fps (at most 600 frames) of a generated 1280x720 30 fps H.264 video (15 minutes, so that the 1 fps
   frames outnumber the 600 kept, as in the hour-long videos of the benchmarks; 1 minute with --quick; generated once
   and cached): seconds and peak host memory, the released loop (OpenCV grab/retrieve of every frame, keeping
   full-resolution RGB images) against `llava.video.load_video`, which also resizes every kept frame to the SigLIP
   and CLIP inputs; the released loop followed by that resizing is measured too;
4. end-to-end seconds per frame for the tiny model at the same frame counts.
The last line printed is `BENCH ` followed by one JSON object with every figure.

The released transcriptions below (`released_*`) exist only here, as the baseline; the library never uses them.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llava.errors import command
from llava.files import atomic_write, write_video

FULL_FRAMES = (64, 256, 1024, 4096)
QUICK_FRAMES = (64, 128, 256, 512)
DKS_FRAMES, DKS_KEYFRAMES = 10_000, 32
DECODE_SECONDS = 900
PIPELINE_VIDEOS, PIPELINE_SECONDS, PIPELINE_QUESTIONS = 6, 30, 3
PIPELINE_FRAMES, PIPELINE_NEW_TOKENS = 32, 16


# ----- process memory (Linux /proc) -----


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> int:
    """Reset the peak-RSS counter; returns the current RSS in bytes."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_kib("VmRSS") * 1024


def peak_bytes_since(baseline: int) -> int:
    return _status_kib("VmHWM") * 1024 - baseline


# ----- the scaled-down model -----


def bench_model(dim: int = 256):
    """ViLAMP with a 27x27-patch SigLIP on 27x27-pixel frames (patch 1) and projector width `dim`, float32."""
    from llava.model import LlavaQwenConfig, LlavaQwenForCausalLM

    torch.manual_seed(0)
    config = LlavaQwenConfig(
        vocab_size=300, hidden_size=dim, intermediate_size=dim, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_frame_num=DKS_KEYFRAMES, composer_type="sig_pooling", composer_proj_dim=16,
        dfm_reference="legacy", f2t_thrd=-1.0, mm_spatial_pool_mode="bilinear",
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=27, patch_size=1),
        clip_config=dict(projection_dim=16,
                         text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=4, max_position_embeddings=16),
                         vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=4, image_size=32, patch_size=8)),
    )
    return LlavaQwenForCausalLM(config).eval()


def random_video(num_frames: int, siglip: int, clip: int, seed: int = 0):
    """A `VideoInputs` of random uint8 frames at the model resolutions (scenes of 8 similar frames)."""
    from llava.model import VideoInputs
    from llava.processing import VideoFrames

    gen = torch.Generator().manual_seed(seed)
    scenes = (num_frames + 7) // 8

    def frames(side):
        base = torch.randint(0, 256, (scenes, side, side, 3), generator=gen, dtype=torch.uint8)
        noise = torch.randint(0, 16, (num_frames, side, side, 3), generator=gen, dtype=torch.uint8)
        return base.repeat_interleave(8, dim=0)[:num_frames] // 2 + noise

    return VideoInputs(VideoFrames(frames(siglip), frames(clip)), torch.tensor([0, 5, 9, 13, 63]))


# ----- transcriptions of the released code -----


def released_greedy(image_embs, text_emb, max_frames, f2f_thrd, f2t_thrd) -> list[int]:
    """The released SeqFrameSelector's greedy walk, operation for operation: sentence-transformers' `cos_sim`
    (normalise, `torch.mm`) for f2t (N,) and the N x N f2f, torch's default sort, a Python loop with a device sync
    per step. Returns the picks in pick order."""
    image_n = F.normalize(image_embs, p=2, dim=1)
    f2f = torch.mm(image_n, F.normalize(image_embs, p=2, dim=1).T)
    f2t = torch.mm(image_n, F.normalize(text_emb.reshape(1, -1), p=2, dim=1).T).reshape(-1)
    frame_num = f2t.shape[0]
    is_visited = torch.zeros(frame_num, dtype=torch.bool)
    is_selected = torch.zeros(frame_num, dtype=torch.long)
    picks = []
    sorted_scores, sorted_indices = torch.sort(f2t, descending=True)
    idx = 0
    while idx < frame_num and is_selected.sum().item() < max_frames:
        if sorted_scores[idx] < f2t_thrd:
            break
        cur = sorted_indices[idx].item()
        if is_visited[cur]:
            idx += 1
            continue
        is_visited[cur] = True
        is_selected[cur] = 1
        picks.append(cur)
        is_visited |= f2f[cur] > f2f_thrd
        idx += 1
    return picks


def released_select(image_embs, text_emb, max_frames, f2f_thrd, f2t_thrd) -> list[int]:
    """The released selector: greedy walk, then the temporal fill; 0/1 per frame."""
    from llava.model.selector import distribute_frames

    picks = set(released_greedy(image_embs, text_emb, max_frames, f2f_thrd, f2t_thrd))
    return distribute_frames([int(i in picks) for i in range(image_embs.shape[0])], max_frames)


def released_encode(model, video) -> torch.Tensor:
    """The released video path: every frame's pixels, features, expanded references and projections at once."""
    from llava.processing import normalize_clip, normalize_siglip

    inner, cfg = model.model, model.config
    pixels = normalize_siglip(video.frames.siglip)  # (N, 3, S, S) float, all frames
    image_embs = inner.frame_selector.embed_images(normalize_clip(video.frames.clip))
    text_embs = inner.frame_selector.embed_text(video.query_ids[None])
    mask = torch.tensor(released_select(image_embs, text_embs[0], cfg.max_frame_num, cfg.f2f_thrd, cfg.f2t_thrd))
    soft = torch.softmax(F.cosine_similarity(image_embs, text_embs, dim=-1), dim=0)
    pixels.mul_((1 - soft.detach() + soft)[:, None, None, None])
    features = inner.mm_projector(inner.vision_tower(pixels))  # (N, 729, D)
    keyframes = mask.nonzero().flatten().tolist()
    source = list(range(keyframes[0])) + [j for j in range(len(keyframes))
                                          for _ in range(keyframes[j], (keyframes + [len(mask)])[j + 1])]
    key_frame_expanded = features[source]  # (N, 729, D) copy
    query_expanded = text_embs[:, None].expand(features.shape[0], features.shape[1], -1)
    merged = _released_sig_pooling(inner.composer_projector, features, key_frame_expanded, query_expanded)
    pooled = inner.pool(features[mask == 1])
    pieces, previous = [], -1
    for j, frame in enumerate(keyframes):
        pieces += [merged[previous + 1 : frame], pooled[j]]
        previous = frame
    pieces += [merged[previous + 1 :], inner.image_newline[None]]
    return torch.cat(pieces)


def _released_sig_pooling(module, img_embs, key_frame_expanded, query_expanded, max_dense_length=60):
    """SigPooling.forward of the released code (its branch for more than 60 frames)."""
    iq, ik = module.linear_iq(img_embs), module.linear_ik(img_embs)
    q, k = module.linear_q(query_expanded), module.linear_k(key_frame_expanded)
    score_q, score_k = [], []
    for start in range(0, img_embs.shape[0], max_dense_length):
        end = start + max_dense_length
        score_q.append(F.cosine_similarity(q[start:end], iq[start:end], dim=-1))
        score_k.append(F.cosine_similarity(k[start:end], ik[start:end], dim=-1))
    score = (torch.cat(score_q) - torch.cat(score_k)) / module.tau
    return torch.stack([(F.softmax(score[i], dim=-1)[:, None] * img_embs[i]).sum(0) for i in range(len(score))])


def released_decode(path: str, max_frame_num: int = 600) -> list[np.ndarray]:
    """The released loop: grab every frame, retrieve one per int(fps), keep full-resolution RGB images."""
    import cv2

    capture = cv2.VideoCapture(path)
    step = max(int(capture.get(cv2.CAP_PROP_FPS)), 1)
    frames, index = [], 0
    while capture.grab():
        if index % step == 0:
            ok, frame = capture.retrieve()
            if ok:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    keep = np.linspace(0, len(frames) - 1, min(max_frame_num, len(frames)), dtype=int)
    return [frames[i] for i in keep]


# ----- workers (each run in its own process) -----


def worker_memory(path: str, num_frames: int) -> dict:
    torch.set_num_threads(2)
    model = bench_model()
    video = random_video(num_frames, 27, 32)
    baseline = reset_peak()
    with torch.no_grad():
        tokens = model.model.encode_video(video).tokens if path == "ours" else released_encode(model, video)
    return {"peak_bytes": peak_bytes_since(baseline), "tokens": int(tokens.shape[0])}


def worker_decode(path: str, video: str) -> dict:
    from llava.processing import VideoProcessor
    from llava.video import load_video

    processor = VideoProcessor(384, 224)
    baseline = reset_peak()
    started = time.perf_counter()
    if path == "ours":
        frames = len(load_video(video, processor, 600).frames)
    else:
        images = released_decode(video)
        frames = len(processor(images) if path == "released+preprocess" else images)
    return {"seconds": time.perf_counter() - started, "peak_bytes": peak_bytes_since(baseline), "frames": frames}


def worker_e2e(checkpoint: str, num_frames: int) -> dict:
    from llava.inference import answer_video
    from llava.model.builder import load_pretrained_model

    torch.set_num_threads(2)
    _, model, processor, _ = load_pretrained_model(checkpoint, device="cpu")
    size, clip = processor.siglip_size, processor.clip_size
    video = random_video(num_frames, size, clip, seed=1)
    started = time.perf_counter()
    answer_video(model, processor, video.frames, "what happens", "What happens?", 1)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "seconds_per_frame": seconds / num_frames}


def worker_pipeline(checkpoint: str, task: str, overlapped: str) -> dict:
    """The harness over the task's videos: decoding overlapped with answering (the default prefetch) or one video
    after the other (--decode_memory_gb 0). Seconds of the answer loop: the sum of the records' `seconds` (answering
    plus waiting for decoded frames), the pool's start and the model's load left out."""
    from llava.eval import generic
    from llava.eval.harness import run
    from llava.eval.records import read_records

    out = Path(task).parent / f"out-{overlapped}"
    argv = ["--dataset_path", task, "--video_dir", str(Path(task).parent), "--output_dir", str(out), "--version",
            checkpoint, "--max_frames", str(PIPELINE_FRAMES), "--max_new_tokens", str(PIPELINE_NEW_TOKENS),
            "--overwrite", *([] if overlapped == "overlapped" else ["--decode_memory_gb", "0"])]
    path = run(generic.BENCHMARK, argv)
    records = read_records(path)[0]
    if any(record["error"] for record in records):
        raise RuntimeError(f"pipeline run failed: {[r['error'] for r in records if r['error']][:1]}")
    return {"seconds": sum(record["seconds"] for record in records), "questions": len(records)}


WORKERS = {"memory": worker_memory, "decode": worker_decode, "e2e": worker_e2e, "pipeline": worker_pipeline}


def run_worker(kind: str, *args) -> dict | None:
    """Run one measurement in a fresh Python process; None if it failed (e.g. killed for memory)."""
    command = [sys.executable, "-m", "llava.bench", "--worker", kind, *map(str, args)]
    # A fixed mmap threshold returns freed tensor memory to the system at once; glibc's default adapts the threshold
    # and lets freed chunk buffers pile up in the heap, which adds noise of +-100 MB to the peaks of both paths.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"  {kind} {args}: failed (exit {done.returncode}) {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT ") :])


# ----- measurements in the parent -----


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    return float(np.polyfit(np.array(xs, dtype=float), np.array(ys, dtype=float), 1)[0])


def measure_memory(frame_counts) -> dict:
    result = {}
    for path in ("released", "ours"):
        peaks = {n: run_worker("memory", path, n) for n in frame_counts}
        ok = {n: r["peak_bytes"] for n, r in peaks.items() if r}
        result[path] = {"peak_bytes": {str(n): ok.get(n) for n in frame_counts},
                        "bytes_per_frame": slope(list(ok), list(ok.values())) if len(ok) >= 2 else None}
    return result


def measure_dks(repeats: int = 3) -> dict:
    """Seconds of each selector at N = 10,000, K = 32: the best of `repeats` runs for the released one and of
    5 x `repeats` for ours (a few ms each), alternating, so that both see the same machine load."""
    from llava.model.selector import select_keyframes

    gen = torch.Generator().manual_seed(0)
    scenes = torch.randn(-(-DKS_FRAMES // 30), 512, generator=gen)  # scenes of 30 similar frames
    embs = scenes.repeat_interleave(30, dim=0)[:DKS_FRAMES] + 0.4 * torch.randn(DKS_FRAMES, 512, generator=gen)
    text = torch.randn(512, generator=gen)
    paths = {"released": (released_select, 1), "ours": (lambda *a: select_keyframes(*a).keyframes, 5)}
    timings = {name: [] for name in paths}
    results = {}
    for _ in range(repeats):
        for name, (select, runs) in paths.items():
            for _ in range(runs):
                started = time.perf_counter()
                results[name] = select(embs, text, DKS_KEYFRAMES, 0.85, -1.0)
                timings[name].append(time.perf_counter() - started)
    if [i for i, v in enumerate(results["released"]) if v] != results["ours"]:
        raise RuntimeError("DKS: the two paths chose different keyframes")
    return {name: min(seconds) for name, seconds in timings.items()}


def make_pipeline_task(folder: Path, videos: int, seconds: int) -> Path:
    """`videos` generated 720p30 videos of `seconds` s and a generic JSON-lines task asking PIPELINE_QUESTIONS
    multiple-choice questions about each (Video-MME asks 3 per video)."""
    rows = []
    for number in range(videos):
        make_video(folder / f"video{number}.mp4", seconds, shift=number)
        rows += [{"video": f"video{number}.mp4", "question": f"Question {q} about video {number}?",
                  "options": ["red", "green", "blue", "white"], "answer": "A", "id": f"{number}-{q}"}
                 for q in range(PIPELINE_QUESTIONS)]
    task = folder / "task.jsonl"
    task.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return task


def make_video(path: Path, seconds: int, width: int = 1280, height: int = 720, fps: int = 30,
               shift: int = 0) -> Path:
    """A moving colour-gradient H.264 video (written once; reused when present)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) % 256], axis=-1).astype(np.uint8)
    frames = (np.roll(base, (i * 3 + shift, i * 5), axis=(0, 1)) for i in range(seconds * fps))  # all differ
    with atomic_write(path) as partial:
        write_video(partial, frames, fps, crf=28, preset="ultrafast")
    return path


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller frame counts and a 1-minute video")
    parser.add_argument("--cache-dir", type=Path, default=Path("outputs/bench"), help="generated video and model")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        values = [int(v) if v.isdigit() else v for v in rest]
        print("RESULT " + json.dumps(WORKERS[kind](*values)))
        return

    frame_counts = QUICK_FRAMES if args.quick else FULL_FRAMES
    print(f"frame counts {frame_counts}; machine: {torch.get_num_threads()} threads, torch {torch.__version__}")
    memory = measure_memory(frame_counts)
    dks = measure_dks()
    seconds = 60 if args.quick else DECODE_SECONDS
    video = make_video(args.cache_dir / f"bench_{seconds}s_720p30.mp4", seconds)
    decode = {path: run_worker("decode", path, video) for path in ("released", "released+preprocess", "ours")}
    checkpoint = args.cache_dir / "tiny-vilamp"
    if not (checkpoint / "config.json").exists():
        from llava.tiny import write_tiny_checkpoint

        write_tiny_checkpoint(checkpoint)
    e2e = [run_worker("e2e", checkpoint, n) for n in frame_counts]
    task = make_pipeline_task(args.cache_dir / "pipeline", PIPELINE_VIDEOS, PIPELINE_SECONDS)
    pipeline = {mode: run_worker("pipeline", checkpoint, task, mode) for mode in ("sequential", "overlapped")}

    mem_r, mem_o = memory["released"]["bytes_per_frame"], memory["ours"]["bytes_per_frame"]
    figures = {
        "frame_counts": list(frame_counts),
        "mem_peak_bytes_released": memory["released"]["peak_bytes"],
        "mem_peak_bytes_ours": memory["ours"]["peak_bytes"],
        "mem_bytes_per_frame_released": mem_r,
        "mem_bytes_per_frame_ours": mem_o,
        "mem_ratio": mem_r / mem_o if mem_r and mem_o else None,
        "dks_seconds_released": dks["released"],
        "dks_seconds_ours": dks["ours"],
        "dks_speedup": dks["released"] / dks["ours"],
        "decode_video_seconds": seconds,
        "decode_seconds_released": decode["released"] and decode["released"]["seconds"],
        "decode_seconds_ours": decode["ours"] and decode["ours"]["seconds"],
        "decode_peak_bytes_released": decode["released"] and decode["released"]["peak_bytes"],
        "decode_peak_bytes_ours": decode["ours"] and decode["ours"]["peak_bytes"],
        # The released loop leaves resizing to its processors; ours resizes while decoding. Both together:
        "decode_and_preprocess_seconds_released": decode["released+preprocess"] and decode["released+preprocess"]["seconds"],
        "decode_and_preprocess_peak_bytes_released": decode["released+preprocess"] and decode["released+preprocess"]["peak_bytes"],
        "e2e_seconds_per_frame": [r and r["seconds_per_frame"] for r in e2e],
        "eval_pipeline_videos": PIPELINE_VIDEOS,
        "eval_pipeline_seconds_sequential": pipeline["sequential"] and pipeline["sequential"]["seconds"],
        "eval_pipeline_seconds_overlapped": pipeline["overlapped"] and pipeline["overlapped"]["seconds"],
    }
    if pipeline["sequential"] and pipeline["overlapped"]:
        figures["eval_pipeline_speedup"] = pipeline["sequential"]["seconds"] / pipeline["overlapped"]["seconds"]
    if decode["released"] and decode["ours"]:
        figures["decode_time_ratio"] = decode["released"]["seconds"] / decode["ours"]["seconds"]
        figures["decode_memory_ratio"] = decode["released"]["peak_bytes"] / decode["ours"]["peak_bytes"]
    if decode["released+preprocess"] and decode["ours"]:
        figures["decode_and_preprocess_time_ratio"] = decode["released+preprocess"]["seconds"] / decode["ours"]["seconds"]
    print_table(figures)
    print("BENCH " + json.dumps(figures))


def print_table(f: dict) -> None:
    mb = 1e6

    def fmt(value, scale=1.0, unit=""):
        return "n/a" if value is None else f"{value / scale:.3f}{unit}"

    print(f"\n{'measure':<44}{'released':>14}{'ours':>14}{'ratio':>10}")
    rows = [
        ("vision memory per extra frame (MB)", f["mem_bytes_per_frame_released"], f["mem_bytes_per_frame_ours"], mb),
        ("DKS selection, 10,000 frames (s)", f["dks_seconds_released"], f["dks_seconds_ours"], 1),
        (f"decode {f['decode_video_seconds']} s of 720p30 at 1 fps (s)", f["decode_seconds_released"],
         f["decode_seconds_ours"], 1),
        ("decode peak host memory (MB)", f["decode_peak_bytes_released"], f["decode_peak_bytes_ours"], mb),
        ("decode + resize to model inputs (s)", f["decode_and_preprocess_seconds_released"], f["decode_seconds_ours"], 1),
        ("decode + resize peak host memory (MB)", f["decode_and_preprocess_peak_bytes_released"],
         f["decode_peak_bytes_ours"], mb),
        (f"harness, {f['eval_pipeline_videos']} videos: one after the other vs overlapped (s)",
         f["eval_pipeline_seconds_sequential"], f["eval_pipeline_seconds_overlapped"], 1),
    ]
    for name, released, ours, scale in rows:
        ratio = released / ours if released and ours else None
        print(f"{name:<44}{fmt(released, scale):>14}{fmt(ours, scale):>14}{fmt(ratio, 1, 'x'):>10}")
    print("\npeak vision memory by frame count (MB):")
    for n in f["frame_counts"]:
        r, o = f["mem_peak_bytes_released"][str(n)], f["mem_peak_bytes_ours"][str(n)]
        print(f"  N={n:<6} released {fmt(r, mb):>10}   ours {fmt(o, mb):>10}")
    print("end-to-end seconds per frame, tiny model: "
          + ", ".join(f"N={n}: {fmt(s)}" for n, s in zip(f["frame_counts"], f["e2e_seconds_per_frame"])))


if __name__ == "__main__":
    main()
