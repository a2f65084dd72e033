"""The PyTorch selective scan against a step-by-step reference, and against mamba-ssm's CUDA
kernel wherever CUDA and mamba-ssm exist."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ser.models.mamba import MambaMixer, scan, selective_scan


def reference_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """mamba-ssm's selective_scan_ref, written out as the plain loop over time."""
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    B, C = B.float(), C.float()
    if B.dim() == 4:
        B = B.repeat_interleave(dim // B.shape[1], dim=1)
    if C.dim() == 4:
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    for i in range(u.shape[2]):
        dA = torch.exp(delta[:, :, i, None] * A)
        if B.dim() == 2:
            dBu = delta[:, :, i, None] * B * u[:, :, i, None]
        elif B.dim() == 3:
            dBu = delta[:, :, i, None] * B[:, None, :, i] * u[:, :, i, None]
        else:
            dBu = delta[:, :, i, None] * B[:, :, :, i] * u[:, :, i, None]
        x = dA * x + dBu
        if C.dim() == 2:
            y = (x * C).sum(-1)
        elif C.dim() == 3:
            y = (x * C[:, None, :, i]).sum(-1)
        else:
            y = (x * C[:, :, :, i]).sum(-1)
        ys.append(y)
    out = torch.stack(ys, dim=2)
    if D is not None:
        out = out + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out


def inputs(shape_bc: str, batch=2, dim=6, length=37, n=4, device="cpu"):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    A = -torch.rand(dim, n, generator=g).to(device) * 2
    bc = {"dn": (dim, n), "bnl": (batch, n, length), "bgnl": (batch, 2, n, length)}[shape_bc]
    return dict(u=r(batch, dim, length), delta=r(batch, dim, length) * 0.5, A=A, B=r(*bc), C=r(*bc),
                D=r(dim), z=r(batch, dim, length), delta_bias=r(dim) * 0.1)


@pytest.mark.parametrize("shape_bc", ["dn", "bnl", "bgnl"])
@pytest.mark.parametrize("options", [dict(delta_softplus=True), dict(delta_softplus=False, drop=("D", "z", "delta_bias"))])
def test_parallel_scan_matches_the_sequential_reference(shape_bc, options):
    args = inputs(shape_bc)
    for name in options.get("drop", ()):
        args[name] = None
    kwargs = dict(delta_softplus=options["delta_softplus"], return_last_state=True)
    out, last = selective_scan(**args, **kwargs)
    ref_out, ref_last = reference_scan(**args, **kwargs)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last, ref_last, rtol=1e-4, atol=1e-4)


def test_gradients_match_the_reference():
    args = {k: v.requires_grad_() if v is not None else v for k, v in inputs("bnl").items()}
    selective_scan(**args, delta_softplus=True).square().sum().backward()
    grads = {k: v.grad.clone() for k, v in args.items()}
    for v in args.values():
        v.grad = None
    reference_scan(**args, delta_softplus=True).square().sum().backward()
    for k, v in args.items():
        torch.testing.assert_close(grads[k], v.grad, rtol=1e-3, atol=1e-3)


def test_half_precision_inputs_come_back_in_their_dtype():
    args = inputs("bnl")
    args["u"] = args["u"].bfloat16()
    assert selective_scan(**args).dtype == torch.bfloat16


def test_mixer_has_mamba_ssm_parameter_layout():
    mixer = MambaMixer(d_model=32, d_state=16, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {
        "A_log": (64, 16), "D": (64,), "in_proj.weight": (128, 32), "conv1d.weight": (64, 1, 4),
        "conv1d.bias": (64,), "x_proj.weight": (2 + 32, 64), "dt_proj.weight": (64, 2),
        "dt_proj.bias": (64,), "out_proj.weight": (32, 64),
    }
    x = torch.randn(2, 10, 32)
    y = mixer(x)
    assert y.shape == x.shape
    # causal: the future does not change the past
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, 32)
    torch.testing.assert_close(mixer(x2)[:, :6], y[:, :6])


def _has_cuda_mamba():
    if not torch.cuda.is_available():
        return False
    try:
        import mamba_ssm  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.cuda
@pytest.mark.skipif(not _has_cuda_mamba(), reason="needs CUDA and mamba-ssm")
@pytest.mark.parametrize("shape_bc", ["dn", "bnl", "bgnl"])
def test_cuda_kernel_and_pytorch_scan_agree(shape_bc):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    args = inputs(shape_bc, batch=3, dim=64, length=200, n=16, device="cuda")
    out, last = selective_scan_fn(**args, delta_softplus=True, return_last_state=True)
    ours, our_last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(ours, out, rtol=2e-3, atol=2e-3)
    if shape_bc == "dn":
        # With a time-invariant B the kernel folds B into C and keeps its state without B
        # (selective_scan_fwd_kernel.cuh), so its "last state" is ours (the reference's) / B.
        last = last * args["B"]
    torch.testing.assert_close(our_last, last, rtol=2e-3, atol=2e-3)
    assert scan(*args.values()).is_cuda


@pytest.mark.cuda
@pytest.mark.skipif(not _has_cuda_mamba(), reason="needs CUDA and mamba-ssm")
@pytest.mark.parametrize("shape_bc", ["dn", "bnl"])
def test_cuda_kernel_and_pytorch_scan_have_the_same_gradients(shape_bc):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    def grads(fn):
        args = {k: v.clone().requires_grad_() for k, v in
                inputs(shape_bc, batch=2, dim=32, length=120, n=16, device="cuda").items()}
        fn(**args, delta_softplus=True).square().sum().backward()
        return {k: v.grad for k, v in args.items()}

    theirs, ours = grads(selective_scan_fn), grads(selective_scan)
    for name, grad in theirs.items():
        torch.testing.assert_close(ours[name], grad, rtol=5e-3, atol=5e-3, msg=name)


@pytest.mark.cuda
@pytest.mark.skipif(not _has_cuda_mamba(), reason="needs CUDA and mamba-ssm")
def test_mixer_weights_move_to_mamba_ssm():
    from mamba_ssm import Mamba

    ours = MambaMixer(d_model=64).cuda()
    theirs = Mamba(d_model=64, use_fast_path=False).cuda()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 50, 64, device="cuda")
    torch.testing.assert_close(ours(x), theirs(x), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("failure, reason", [
    ("raise ImportError(\"cannot import name 'GreedySearchDecoderOnlyOutput'\")", "GreedySearchDecoderOnlyOutput"),
    ("import selective_scan_cuda", "selective_scan_cuda"),
])
def test_a_mamba_ssm_that_does_not_import_is_reported_not_silently_skipped(tmp_path, failure, reason):
    import os
    import subprocess
    import sys

    package = tmp_path / "mamba_ssm"
    package.mkdir()
    (package / "__init__.py").write_text(failure + "\n")
    code = "import ser.models.mamba as m; assert m._cuda_selective_scan is None"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "mamba-ssm is installed but does not import" in proc.stderr and reason in proc.stderr
