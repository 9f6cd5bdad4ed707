"""Compositing rules, the layout checker and the published test-set build, on a tiny real-layout dataset."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from fixtures_adobe import make_tiny_adobe
from PIL import Image

from matting_lib.data.compositing import (
    build_test_set,
    build_train_composites,
    composite,
    list_test_items,
    upscaled_size,
)
from matting_lib.data.layout import DatasetLayout, LayoutError, read_alpha, read_rgb, read_trimap
from matting_lib.data.layout_check import check_layout, link_dataset
from matting_lib.files import sha256_file


# ----------------------------------------------------------------------------------------------- rules
def _adobe_reference(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Adobe's Composition_code.py restated: PIL bicubic upscale, top-left crop, a per-pixel Python loop."""
    h, w = alpha.shape
    bg_im = Image.fromarray(bg)
    bw, bh = bg_im.size
    ratio = max(w / bw, h / bh)
    if ratio > 1:
        bg_im = bg_im.resize((math.ceil(bw * ratio), math.ceil(bh * ratio)), Image.BICUBIC)
    out = np.array(bg_im.crop((0, 0, w, h)))
    for y in range(h):
        for x in range(w):
            a = alpha[y, x] / 255
            if a >= 1:
                out[y, x] = fg[y, x]
            elif a > 0:
                out[y, x] = [int(a * int(fg[y, x, c]) + (1 - a) * int(out[y, x, c])) for c in range(3)]
    return out


@pytest.fixture
def small():
    rng = np.random.default_rng(1)
    fg = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    alpha = rng.choice([0, 255, 1, 77, 128, 254], size=(9, 11)).astype(np.uint8)
    return fg, alpha, rng


def test_hand_computed_pixel_truncates():
    fg = np.full((1, 1, 3), 201, np.uint8)
    bg = np.full((1, 1, 3), 100, np.uint8)
    a = np.full((1, 1), 128, np.uint8)
    # 128/255 * 201 + (1 - 128/255) * 100 = 150.698... -> 150 (truncation, not rounding)
    assert composite(fg, a, bg).tolist() == [[[150, 150, 150]]]
    assert composite(fg, a, bg, method="adobe").tolist() == [[[150, 150, 150]]]


@pytest.mark.parametrize("method", ["revised", "adobe"])
def test_alpha_0_and_255_copy_background_crop_and_foreground(small, method):
    fg, alpha, rng = small
    bg = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)  # larger: top-left crop, no resize
    out = composite(fg, alpha, bg, method=method)
    assert out.dtype == np.uint8 and out.shape == fg.shape
    assert np.array_equal(out[alpha == 255], fg[alpha == 255])
    assert np.array_equal(out[alpha == 0], bg[:9, :11][alpha == 0])


def test_revised_blend_is_float32_truncation(small):
    fg, alpha, rng = small
    bg = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    a = np.float32(1) * (alpha / 255.0).astype(np.float32)[..., None]
    expected = (a * fg.astype(np.float32) + (1 - a) * bg.astype(np.float32)).astype(np.uint8)
    assert np.array_equal(composite(fg, alpha, bg), expected)


def test_adobe_method_matches_the_original_per_pixel_loop(small):
    fg, alpha, rng = small
    for bg_shape in [(20, 30, 3), (5, 4, 3), (9, 7, 3)]:  # larger, smaller in both sides, smaller in one
        bg = rng.integers(0, 256, bg_shape, dtype=np.uint8)
        assert np.array_equal(composite(fg, alpha, bg, method="adobe"), _adobe_reference(fg, alpha, bg))


def test_small_background_is_upscaled_by_ceil_ratio_with_opencv_bicubic(small):
    fg, _, rng = small
    bg = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    # ratio = max(11 / 5, 9 / 4) = 2.25 -> (ceil(5 * 2.25), ceil(4 * 2.25)) = (12, 9)
    assert upscaled_size((9, 11), (4, 5)) == (12, 9)
    assert upscaled_size((9, 11), (9, 11)) is None
    zero = np.zeros((9, 11), np.uint8)
    expected = cv2.resize(bg, (12, 9), interpolation=cv2.INTER_CUBIC)[:9, :11]
    assert np.array_equal(composite(fg, zero, bg), expected)
    # the two methods differ only where the bicubic kernels do (OpenCV vs PIL)
    assert not np.array_equal(composite(fg, zero, bg), composite(fg, zero, bg, method="adobe"))


def test_bad_arguments_name_the_problem(small):
    fg, alpha, _ = small
    with pytest.raises(ValueError, match="revised, adobe"):
        composite(fg, alpha, fg, method="nope")
    with pytest.raises(ValueError, match="alpha must be uint8"):
        composite(fg, alpha[:-1], fg)
    with pytest.raises(ValueError, match="non-empty"):
        composite(fg, alpha, np.zeros((0, 4, 3), np.uint8))


# ----------------------------------------------------------------------------------------------- the whole path
@pytest.fixture
def adobe(tmp_path):
    return DatasetLayout.for_root(make_tiny_adobe(tmp_path / "adobe"))


def test_layout_paths_and_name_lists(adobe, tmp_path):
    assert adobe.bg_train_dir == adobe.root / "train2014"
    assert adobe.bg_test_dir == adobe.root / "VOCdevkit" / "VOC2012" / "JPEGImages"
    assert DatasetLayout.for_root(tmp_path, bg_test_dir="voc").bg_test_dir == tmp_path / "voc"
    assert DatasetLayout.for_root(tmp_path, bg_train_dir="/abs/coco").bg_train_dir.as_posix() == "/abs/coco"
    fgs = adobe.fg_names("train")
    assert len(fgs) == 3 and adobe.bg_per_fg("train") == 2 and adobe.bg_per_fg("test") == 2
    assert adobe.fg_path("train", fgs[2]).parent.parent.name == "Other"  # the second folder is searched
    assert adobe.bg_names("train")[0].startswith("COCO_train2014_") and adobe.bg_names("test")[0] == "2008_000001.jpg"


def test_check_layout_ok_on_a_complete_dataset(adobe):
    report = check_layout(adobe, progress=False)
    assert report.ok, str(report)
    assert report.counts["train foregrounds"] == 3 and report.counts["test backgrounds per foreground"] == 2
    assert "OK" in str(report) and report.raise_if_bad() is report


def test_build_test_set_writes_the_published_composites(adobe):
    items = build_test_set(adobe, progress=False)
    fgs, bgs = adobe.fg_names("test"), adobe.bg_names("test")
    assert [it.name for it in items] == [
        f"{bgs[f * 2 + b][:-4]}!{fgs[f][:-4]}!{f}!{b}" for f in range(2) for b in range(2)
    ]
    assert items == list_test_items(adobe)
    for it in items:
        fg = read_rgb(adobe.fg_path("test", it.fg_name))
        expected = composite(fg, read_alpha(it.alpha_path), read_rgb(adobe.bg_path("test", it.bg_name)))
        assert np.array_equal(read_rgb(it.image_path), expected)
        assert it.trimap_path.is_file() and it.trimap_path.name == f"{it.fg_name[:-4]}_{it.name[-1]}.png"
    manifest = json.loads((adobe.merged_dir / "manifest.json").read_text())
    assert manifest["complete"] and manifest["method"] == "revised"
    assert manifest["files"] == {p.name: sha256_file(p) for p in adobe.merged_dir.glob("*.png")}
    assert not list(adobe.merged_dir.glob(".*"))  # no temporary files left behind


def test_second_build_skips_correct_files_and_repairs_damaged_ones(adobe):
    items = build_test_set(adobe, progress=False)
    stamps = {it.name: it.image_path.stat().st_mtime_ns for it in items}
    build_test_set(adobe, progress=False)
    assert stamps == {it.name: it.image_path.stat().st_mtime_ns for it in items}
    # an interrupted run: one composite missing, one truncated, manifest incomplete
    items[0].image_path.unlink()
    items[1].image_path.write_bytes(items[1].image_path.read_bytes()[:50])
    man = adobe.merged_dir / "manifest.json"
    man.write_text(json.dumps({**json.loads(man.read_text()), "complete": False}))
    build_test_set(adobe, progress=False)
    assert read_rgb(items[0].image_path).shape == (48, 64, 3) and read_rgb(items[1].image_path).shape == (48, 64, 3)
    assert all(it.image_path.stat().st_mtime_ns == stamps[it.name] for it in items[2:])


def test_a_different_method_or_foreign_folder_is_refused_unless_overwrite(adobe):
    build_test_set(adobe, progress=False)
    with pytest.raises(LayoutError, match="method.*rebuild it with --set data.overwrite=true"):
        build_test_set(adobe, method="adobe", progress=False)
    build_test_set(adobe, method="adobe", overwrite=True, progress=False)
    assert json.loads((adobe.merged_dir / "manifest.json").read_text())["method"] == "adobe"
    (adobe.merged_dir / "manifest.json").unlink()
    with pytest.raises(LayoutError, match="no manifest"):
        build_test_set(adobe, method="adobe", progress=False)


def test_changed_inputs_are_detected(adobe):
    build_test_set(adobe, progress=False)
    bg = adobe.bg_path("test", adobe.bg_names("test")[0])
    cv2.imwrite(str(bg), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(LayoutError, match="inputs"):
        build_test_set(adobe, progress=False)


def test_train_composites_for_inspection(adobe):
    items = build_train_composites(adobe, limit=2, progress=False)
    assert len(items) == 4 and all(it.image_path.is_file() and it.trimap_path is None for it in items)
    assert items[0].image_path.parent == adobe.train_merged_dir


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_files_are_reported_by_name(adobe):
    name = adobe.fg_names("test")[1]
    (adobe.test_fg_dir / name).unlink()
    adobe.trimap_path(adobe.fg_names("test")[0], 1).unlink()
    report = check_layout(adobe, split="test", progress=False)
    assert not report.ok
    assert any(name in m for m in report.missing) and any("_1.png" in m for m in report.missing)
    with pytest.raises(LayoutError, match=name):
        build_test_set(adobe, progress=False)


def test_size_mismatch_rgba_and_16bit_alpha(adobe):
    fgs = adobe.fg_names("train")
    p0 = adobe.alpha_path("train", fgs[0])
    cv2.imwrite(str(p0), np.zeros((10, 10), np.uint8))
    p1 = adobe.alpha_path("train", fgs[1])
    cv2.imwrite(str(p1), np.zeros((48, 64, 4), np.uint8))
    p2 = adobe.alpha_path("train", fgs[2]).with_suffix(".png")
    adobe.alpha_path("train", fgs[2]).unlink()
    cv2.imwrite(str(p2), np.zeros((48, 64), np.uint16))
    p2.rename(p2.with_suffix(".jpg"))  # keep the listed name; content is a 16-bit PNG
    report = check_layout(adobe, split="train", progress=False)
    assert any(fgs[0] in m and "10x10" in m for m in report.size_mismatch)
    assert any(str(p1) in m and "RGBA" in m for m in report.bad_format)
    assert any(fgs[2] in m and "16" in m for m in report.bad_format)
    with pytest.raises(LayoutError, match="channels"):
        read_alpha(p1)
    with pytest.raises(LayoutError, match="16-bit"):
        read_alpha(p2.with_suffix(".jpg"))


def test_name_lists_unreadable_and_tiny_backgrounds(adobe):
    bgs = adobe.bg_names("train")
    adobe.bg_path("train", bgs[0]).write_bytes(b"not a jpeg")
    cv2.imwrite(str(adobe.bg_path("train", bgs[1])), np.zeros((8, 300, 3), np.uint8))
    adobe.training_bg_names_file.write_text("\n".join(bgs[:-1]) + "\n")
    adobe.test_fg_names_file.write_text("\n")
    report = check_layout(adobe, progress=False)
    assert any(bgs[0] in m for m in report.unreadable)
    assert any(bgs[1] in m and "8" in m for m in report.bad_format)
    assert any("5 names for 3 foregrounds" in m for m in report.inconsistent)
    assert any("empty" in m for m in report.inconsistent)
    text = str(report)
    assert f"{len(report.problems)} problem(s)" in text and "unreadable (1)" in text
    with pytest.raises(LayoutError):
        report.raise_if_bad()
    with pytest.raises(LayoutError, match="cannot read image"):
        read_rgb(adobe.bg_path("train", bgs[0]))
    assert not check_layout(DatasetLayout.for_root(adobe.root / "nowhere"), progress=False).ok


# ----------------------------------------------------------------------------------------------- bad input
def test_name_list_with_a_non_utf8_byte_names_the_file_and_line(adobe):
    names = adobe.fg_names("test")
    adobe.test_fg_names_file.write_bytes(("\n".join(names) + "\n").encode() + b"caf\xe9.png\n")
    with pytest.raises(LayoutError, match=rf"test_fg_names.txt, line {len(names) + 1}: byte b'\\xe9' is not UTF-8"):
        adobe.fg_names("test")
    report = check_layout(adobe, progress=False)  # the checker reports it instead of crashing
    assert any("is not UTF-8" in m for m in report.inconsistent)
    adobe.test_fg_names_file.write_bytes(b"\xef\xbb\xbf" + ("\n".join(names) + "\n").encode())  # BOM: fine
    assert adobe.fg_names("test") == names


def test_read_trimap_grey_rgb_is_grey_colour_and_16_bit_are_refused(tmp_path):
    t = np.array([[0, 128, 255, 128]], np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), t)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([t, t, t]))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([t, t, t, np.full_like(t, 255)]))
    for name in ("grey.png", "rgb.png", "rgba.png"):
        assert np.array_equal(read_trimap(tmp_path / name), t), name
    cv2.imwrite(str(tmp_path / "red.png"), np.dstack([np.zeros_like(t), np.zeros_like(t), t]))  # BGR: red
    with pytest.raises(LayoutError, match=r"trimap .*red.png is a colour image"):
        read_trimap(tmp_path / "red.png")
    cv2.imwrite(str(tmp_path / "deep.png"), t.astype(np.uint16) * 257)
    with pytest.raises(LayoutError, match=r"deep.png is uint16"):
        read_trimap(tmp_path / "deep.png")


def test_link_dataset_refuses_a_wrong_root_before_linking_and_replaces_a_dangling_link(adobe, tmp_path):
    data = tmp_path / "data" / "adobe"
    for wrong in (tmp_path / "typo", adobe.root / "Combined_Dataset"):  # missing; exists but is the wrong level
        with pytest.raises(LayoutError, match="adobe_root"):
            link_dataset(data, wrong)
        assert not data.is_symlink() and not data.exists()
    data.parent.mkdir(parents=True, exist_ok=True)
    data.symlink_to(tmp_path / "typo")  # what an older version left after a mistyped --adobe-root
    assert link_dataset(data, adobe.root) == data and data.resolve() == adobe.root.resolve()
    assert link_dataset(data, adobe.root) == data  # again: nothing to do
    other = tmp_path / "other"
    (other / "Combined_Dataset").mkdir(parents=True)
    with pytest.raises(LayoutError, match="already exists and is not a link to"):
        link_dataset(data, other)  # a working link to another dataset is not replaced silently
    assert data.resolve() == adobe.root.resolve()
