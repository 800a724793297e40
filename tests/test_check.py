"""``yolo-attn check``'s two FLOPs figures: ours (``count_flops``: one forward at the real size, FlopCounterMode) and
Ultralytics' (``thop_flops``: its model summary, the bundled thop). The bundled thop counts matmul, bmm, einsum and
SDPA like ours (it did not when check.py was written): checked here op by op, so the docs' claim stays true."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from yolo_attn import check


class Op(torch.nn.Module):
    """One attention product on a (1, 4, 16, 16) input: q/k/v are views of it (no counted op besides the product)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.w = torch.nn.Parameter(torch.zeros(1))  # thop reads the device from the first parameter

    def forward(self, x):
        t = x.flatten(2).transpose(1, 2)  # (1, 256, 4)
        if self.kind == "matmul":
            return t @ t.transpose(1, 2)
        if self.kind == "bmm":
            return torch.bmm(t, t.transpose(1, 2))
        if self.kind == "einsum":
            return torch.einsum("bnc,bmc->bnm", t, t)
        return F.scaled_dot_product_attention(t.unsqueeze(1), t.unsqueeze(1), t.unsqueeze(1))


@pytest.mark.parametrize("kind", ["matmul", "bmm", "einsum", "sdpa"])
def test_ultralytics_thop_counts_attention_products(kind):
    thop = pytest.importorskip("thop")
    m, x = Op(kind).eval(), torch.randn(1, 4, 16, 16)
    macs = thop.profile(m, inputs=(x,), verbose=False)[0]
    ours = check.count_flops(m, (1, 4, 16, 16))
    assert ours > 0 and macs > 0, (ours, macs)
    assert 2 * macs == pytest.approx(ours, rel=0.05), (kind, 2 * macs, ours)  # SDPA: softmax counted or not


def test_check_prints_both_counts_and_says_which_the_readme_uses(capsys):
    assert check.main(["yolov8-shsa-neck.yaml", "--scales", "n", "--imgsz", "320", "--rect", ""]) == 0
    out = capsys.readouterr().out
    m = re.search(r"forward 320x320: ok, ([\d.]+) GFLOPs counted \(Ultralytics' summary, thop: ([\d.]+)\)", out)
    assert m, out[-2000:]
    ours, theirs = float(m.group(1)), float(m.group(2))
    assert ours > 0 and theirs > 0 and abs(ours - theirs) / ours < 0.1, (ours, theirs)  # same ops, different sizes
    assert "the README's figures" in out


def test_thop_flops_is_ultralytics_summary_figure():
    from ultralytics.utils.torch_utils import get_flops

    from yolo_attn.adapter import build_model

    model = build_model("yolov8-lska.yaml", scale="n")
    assert check.thop_flops(model, 160) == pytest.approx(get_flops(model, 160) * 1e9)
    assert check.thop_flops(model, (160, 96)) == pytest.approx(get_flops(model, [160, 96]) * 1e9)
