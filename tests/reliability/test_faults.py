"""pipeline.faults on real failures: ffmpeg's own messages, Python errnos, HTTP statuses, wrapped exceptions."""

from __future__ import annotations

import errno
import subprocess

import pytest

from pipeline import faults, inject, media


def _ffmpeg_error(*args: str) -> media.MediaError:
    with pytest.raises(media.MediaError) as info:
        media.ffmpeg(*args, timeout=60)
    return info.value


def test_real_ffmpeg_failures_are_classified(tmp_path, shared_media):
    clip = str(shared_media / "video_av" / "vexpress_AOC_en_4s.mp4")
    # the kernel's ENOSPC; ffmpeg 5 even exits 0 here (the trailer write fails), media.run still raises
    full = _ffmpeg_error("-i", clip, "-t", "1", "-f", "matroska", "/dev/full")
    assert "No space left on device" in str(full) and faults.is_transient(full)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 1000)
    corrupt = _ffmpeg_error("-i", str(junk), "-f", "null", "-")
    assert not faults.is_transient(corrupt), corrupt  # the media is bad: a drop
    with pytest.raises(media.MediaError) as slow:
        media.run(["ffmpeg", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25", "-t", "600",
                   "-f", "null", "-"], timeout=0.5)  # fmt: skip
    assert slow.value.timed_out and faults.is_transient(slow.value)


@pytest.mark.parametrize("exc, transient", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
    (FileNotFoundError(errno.ENOENT, "gone"), False),
    (PermissionError(errno.EACCES, "denied"), False),
    (ConnectionResetError(), True),
    (TimeoutError(), True),
    (MemoryError(), True),
    (subprocess.TimeoutExpired(["ffmpeg"], 5), True),
    (media.MediaError("ffmpeg exit -9: ", returncode=-9), True),
    (media.MediaError("ffmpeg exit 1: Invalid data found when processing input", returncode=1), False),
    (RuntimeError("ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found"), False),
    (RuntimeError("ERROR: [generic] x: Unable to download webpage: HTTP Error 503: Service Unavailable"), True),
    (RuntimeError("ERROR: unable to download video data: HTTP Error 429: Too Many Requests"), True),
    (ValueError("no face"), False),
    (faults.Transient("anything"), True),
])  # fmt: skip
def test_classification(exc, transient):
    assert faults.is_transient(exc) is transient


def test_wrapped_causes_count_unless_suppressed():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("writing the crop failed") from inner
    except RuntimeError as outer:
        assert faults.is_transient(outer)

    class OutOfMemoryError(RuntimeError):  # torch.cuda's and Ray's name for it
        pass

    assert faults.is_transient(OutOfMemoryError("CUDA out of memory"))
    try:
        try:
            raise ConnectionRefusedError()
        except ConnectionRefusedError:
            raise ValueError("bad setting") from None
    except ValueError as outer:
        assert not faults.is_transient(outer)


def test_retrying_is_bounded_and_skips_permanent_failures():
    calls: list[int] = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError(errno.ENOSPC, "full")
        return "done"

    assert faults.retrying(flaky, attempts=3, backoff_s=0.0, max_backoff_s=0.0, what="t") == "done"
    calls.clear()
    with pytest.raises(OSError):
        faults.retrying(flaky, attempts=2, backoff_s=0.0, max_backoff_s=0.0, what="t")
    assert len(calls) == 2

    def bad():
        calls.append(1)
        raise ValueError("the media is bad")

    calls.clear()
    with pytest.raises(ValueError):
        faults.retrying(bad, attempts=5, backoff_s=0.0, max_backoff_s=0.0, what="t")
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(faults.Transient):  # a spent deadline: left for the next run at once
        faults.retrying(lambda: calls.append(1) or (_ for _ in ()).throw(faults.Transient("late", retry_now=False)),
                        attempts=5, backoff_s=0.0, max_backoff_s=0.0, what="t")  # fmt: skip
    assert len(calls) == 1


def test_fault_plan_budget_is_shared_through_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(inject.ENV, "normalize:oom:2")
    monkeypatch.setenv(inject.STATE_ENV, str(tmp_path))
    token = inject.set_stage("faces")
    inject.at_try()  # another stage: nothing fires
    inject.reset_stage(token)
    token = inject.set_stage("normalize")
    for _ in range(2):
        with pytest.raises(MemoryError):
            inject.at_try()
    inject.at_try()  # spent
    inject.reset_stage(token)
    assert inject.fired(tmp_path) == {"normalize-oom": 2}
    with pytest.raises(ValueError, match="bad entry"):
        inject.parse("normalize:explode:1")
