"""Mamba (selective state space) blocks over feature frames, with a pure-PyTorch scan.

``selective_scan`` has the arguments, shapes and numerics of mamba-ssm's
``selective_scan_fn`` / ``selective_scan_ref``; instead of a Python loop over time it runs a
parallel (Hillis-Steele) scan: log2(L) vectorised steps, fast enough to train on a CPU.
``MambaMixer`` has mamba-ssm's parameter layout and state_dict keys (``in_proj``, ``conv1d``,
``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so weights move between the two;
with mamba-ssm installed and tensors on CUDA, its fused kernel runs instead.

The mixer is causal (left-padded convolution, forward scan), so frames past a clip's end
never influence its real frames: padding cannot change a prediction.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from ser.models.blocks import classifier
from ser.ops import masked_mean

log = logging.getLogger(__name__)

try:  # the CUDA kernel, when mamba-ssm is installed (CUDA machines only)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan
except Exception as err:  # noqa: BLE001 - not installed, or a broken build or version clash
    _cuda_selective_scan = None
    # Installed but unusable (an unbuilt kernel; mamba-ssm <= 2.2.6 imports names transformers 5
    # removed): say so rather than silently run slower.
    if not (isinstance(err, ModuleNotFoundError) and err.name == "mamba_ssm"):
        log.warning("mamba-ssm is installed but does not import (%s: %s): using the PyTorch scan",
                    err.__class__.__name__, err)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """u, delta, z: [batch, dim, L]; A: [dim, N]; B, C: [dim, N] or [batch, N, L] or
    [batch, groups, N, L]; D, delta_bias: [dim]. Returns out [batch, dim, L] (and the last
    state [batch, dim, N]). Computed in float32, returned in u's dtype."""
    if A.is_complex():
        raise NotImplementedError("complex A is not supported by the PyTorch scan")
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    dim = A.shape[0]
    B, C = _per_channel(B.float(), dim), _per_channel(C.float(), dim)

    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A.float()))  # [b, d, L, N]
    if B.dim() == 2:
        drive = torch.einsum("bdl,dn,bdl->bdln", delta, B, u)
    else:
        drive = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    states = _linear_scan(decay, drive)  # x_t = decay_t * x_{t-1} + drive_t
    if C.dim() == 2:
        y = torch.einsum("bdln,dn->bdl", states, C)
    else:
        y = torch.einsum("bdln,bdnl->bdl", states, C)
    out = y if D is None else y + u * D.float()[:, None]
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(dtype_in)
    return (out, states[:, :, -1]) if return_last_state else out


def _per_channel(M: torch.Tensor, dim: int) -> torch.Tensor:
    """[dim, N] stays; [b, N, L] -> [b, 1, N, L]; [b, G, N, L] -> [b, dim, N, L] (groups repeated)."""
    if M.dim() == 3:
        return M.unsqueeze(1)
    if M.dim() == 4:
        return M.repeat_interleave(dim // M.shape[1], dim=1)
    return M


def _linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_t = a_t * x_{t-1} + b_t along dim 2 (x_{-1} = 0), differentiable."""
    return _LinearScan.apply(a, b)


class _LinearScan(torch.autograd.Function):
    """The scan with a hand-written backward: the gradient of a linear recurrence is the same
    recurrence run backwards, so backward is one more parallel scan. Letting autograd record
    the log2(L) sliced steps instead cost 10x more time, mostly zero-filling slice gradients."""

    @staticmethod
    def forward(ctx, a, b):
        states = _parallel_scan(a, b)
        ctx.save_for_backward(a, states)
        return states

    @staticmethod
    def backward(ctx, grad_states):
        a, states = ctx.saved_tensors
        # g_t = dL/dx_t + a_{t+1} * g_{t+1}: a scan over the reversed sequence.
        a_next = torch.zeros_like(a)
        a_next[:, :, :-1] = a[:, :, 1:]
        grad_b = _parallel_scan(a_next.flip(2), grad_states.flip(2)).flip(2)
        previous = torch.zeros_like(states)
        previous[:, :, 1:] = states[:, :, :-1]
        return grad_b * previous, grad_b


@torch.no_grad()
def _parallel_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hillis-Steele inclusive scan in log2(L) vectorised steps: each step composes every
    element with the one ``offset`` before it, (a1, b1) then (a2, b2) == (a1 a2, a2 b1 + b2)."""
    a, b = a.clone(), b.clone()
    length, offset = a.shape[2], 1
    while offset < length:
        # Right-hand sides are evaluated into temporaries first, so the reads see old values.
        b[:, :, offset:] += a[:, :, offset:] * b[:, :, :-offset]
        a[:, :, offset:] = a[:, :, offset:] * a[:, :, :-offset]
        offset *= 2
    return b


def scan(*args, **kwargs):
    """The CUDA kernel where it can run, the PyTorch scan everywhere else."""
    if _cuda_selective_scan is not None and args[0].is_cuda:
        return _cuda_selective_scan(*args, **kwargs)
    return selective_scan(*args, **kwargs)


class MambaMixer(nn.Module):
    """mamba-ssm's ``Mamba`` mixer (v1), same parameters and initialisation."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden[B, L, d_model] -> [B, L, d_model]"""
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # [B, d_inner, L] each
        x = F.silu(self.conv1d(x)[..., :length])  # causal: the padding is on the left only
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # [B, d_inner, L]; bias added in the scan
        y = scan(x, dt, -torch.exp(self.A_log.float()), B.transpose(1, 2).contiguous(),
                 C.transpose(1, 2).contiguous(), self.D.float(), z=z,
                 delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))


class MambaBlock(nn.Module):
    """Pre-norm residual block, as mamba-ssm's ``Block``: x + mixer(norm(x))."""

    def __init__(self, d_model: int, **mixer_args):
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.mixer = MambaMixer(d_model, **mixer_args)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class MambaEncoder(nn.Module):
    """A stack of Mamba blocks and a final norm over [B, L, d_model] sequences."""

    def __init__(self, d_model: int, num_layers: int, d_state: int, d_conv: int, expand: int):
        super().__init__()
        self.layers = nn.ModuleList(MambaBlock(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
                                    for _ in range(num_layers))
        self.norm = nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class MambaClassifier(nn.Module):
    """Mamba over the feature frames: project each frame, Mamba blocks, mean over real frames."""

    def __init__(self, in_features: int, num_classes: int, d_model: int = 128, num_layers: int = 4,
                 d_state: int = 16, d_conv: int = 4, expand: int = 2, head_hidden: int = 64,
                 dropout: float = 0.1):
        super().__init__()
        self.project = nn.Linear(in_features, d_model)
        self.encoder = MambaEncoder(d_model, num_layers, d_state, d_conv, expand)
        self.head = classifier(d_model, head_hidden, num_classes, dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.project(feats.transpose(1, 2)))
        return self.head(masked_mean(x, lengths, dim=1))
