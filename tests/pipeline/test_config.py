"""Config loading: removed settings are named with the reason, frame rate and sample rate are record constants."""

from __future__ import annotations

import pytest

from pipeline.config import REMOVED, BuildConfig, load_config
from pipeline.record import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME


@pytest.mark.parametrize("section,name", [k.split(".") for k in REMOVED])
def test_removed_setting_says_why(tmp_path, section, name):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"{section}:\n  {name}: 30\n")
    with pytest.raises(ValueError, match=f"{name}' was removed: .*delete it"):
        load_config(cfg)


def test_rates_are_record_constants_not_settings():
    assert (FPS, SAMPLE_RATE, SAMPLES_PER_FRAME) == (25, 16000, 640)
    cfg = BuildConfig()
    assert not hasattr(cfg.normalize, "fps") and not hasattr(cfg.normalize, "sample_rate")
    assert not hasattr(cfg.shots, "detector")


def test_a_removed_name_elsewhere_is_just_unknown(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("faces:\n  fps: 30\n")  # only normalize.fps was removed; faces never had one
    with pytest.raises(ValueError, match="unknown setting 'fps'"):
        load_config(cfg)


@pytest.mark.parametrize("value,message", [("res 1080", "is not FIELD"), ("rez:1080", "unknown field 'rez'")])
def test_a_format_sort_yt_dlp_would_refuse_stops_the_build_at_load(tmp_path, value, message):
    """A malformed item makes yt-dlp raise on every video (each ledgered download_failed for good), an unknown
    field is ignored with a warning: both are refused when the config loads, before any download."""
    with pytest.raises(ValueError, match=message):
        load_config(None, out=str(tmp_path), download={"format_sort": value})
    assert load_config(None, out=str(tmp_path), download={"format_sort": "+size,vcodec:h264,res~720"})
