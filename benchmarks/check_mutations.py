"""Break each long-video claim in a copy of the code and show that a test fails (and that the real code passes).

    python benchmarks/check_mutations.py            # prints one row per mutation: the tests and their result

The checkout's tracked and untracked files are copied to a temp dir, one exact source edit is applied (the edit
must match the current code exactly once, else the script stops: a stale mutation is never silently skipped), and
tests/mcdm/test_long_video_claims.py runs there. Nothing in the checkout is changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = "tests/mcdm/test_long_video_claims.py"
MUTATIONS = {  # claim -> (file, original, broken)
    "generation carries the memory (generate_clip)": (
        "mcdm_model/model.py", "        mem = memory.temporal\n", "        mem = None\n"),
    "generation carries the memory (iter_clips)": (
        "mcdm_model/generate.py", "        frames, memory = model.generate_clip(ref, None, a, memory,",
        "        frames, _ = model.generate_clip(ref, None, a, memory,"),
    "frame-aligned attention takes keys from the reference": (
        "mcdm_model/modules/archived_prior.py", "        k = self.norm_k(ref).repeat_interleave(a, dim=0)\n",
        "        k = q\n"),
    "generation uses the sampled motion": (
        "mcdm_model/model.py", "        mtok = self.motion_embed(motion, feats)\n",
        "        mtok = self.motion_embed(torch.zeros_like(motion), feats)\n"),
    "generation uses the archived frames": (
        "mcdm_model/model.py", "        if archived is not None:\n            z_arch = self._latents(archived)\n"
        "        elif memory.archived is not None:\n",
        "        if False:\n            z_arch = self._latents(archived)\n        elif False:\n"),
}  # fmt: skip


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)


def run_tests(tree: Path) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "TFW_SHARED_MEDIA": str(Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media")).resolve())}
    p = subprocess.run([sys.executable, "-m", "pytest", TESTS, "-q", "-p", "no:cacheprovider", "-o", "addopts="],
                       cwd=tree, env=env, capture_output=True, text=True)
    failed = [ln.split("::")[-1].split(" ")[0] for ln in p.stdout.splitlines() if ln.startswith("FAILED")]
    summary = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-300:]
    return p.returncode == 0, f"{summary}; failed: {', '.join(failed) or '-'}"


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcdm-mutations-") as tmp:
        base = Path(tmp) / "tree"
        copy_tree(base)
        ok, info = run_tests(base)
        rows.append(("none (the real code)", ok, info))
        for claim, (rel, old, new) in MUTATIONS.items():
            tree = Path(tmp) / "mut"
            shutil.rmtree(tree, ignore_errors=True)
            shutil.copytree(base, tree)
            src = (tree / rel).read_text()
            if src.count(old) != 1:
                raise SystemExit(f"mutation {claim!r}: the original text is in {rel} {src.count(old)} times, not once")
            (tree / rel).write_text(src.replace(old, new))
            ok, info = run_tests(tree)
            rows.append((claim, ok, info))
    print("| mutation | tests pass? | pytest |\n|---|---|---|")
    for claim, ok, info in rows:
        print(f"| {claim} | {'yes' if ok else 'NO'} | {info} |")
    good = rows[0][1] and not any(ok for _, ok, _ in rows[1:])
    print("every mutation is caught" if good else "NOT every mutation is caught (or the real code fails)")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
