"""The Sinkhorn iteration loop shared by the kernel and the log-domain methods.

One loop, two kinds of block (geomloss style: the update is passed in, the loop is written once):

- a *scaling block* runs plain Sinkhorn iterations ``u = a / (K v)``, ``v = b / (K^T u)`` on a
  kernel ``K``: two matrix-vector products per iteration, the fast path;
- a *log block* runs the same iterations on the dual potentials with ``logsumexp``: exact for
  any ``reg`` and any dtype, several times slower.

The kernel method runs scaling blocks on ``K = exp(-C / reg)`` and nothing else (it underflows as
the reference code does). The log method is the stabilised scheme of Schmitzer (2019): scalings
are kept relative to absorbed potentials ``alpha, beta`` (``K~ = exp((alpha + beta - C) / reg)``),
absorbed into them when they grow, and any block whose scalings leave a safe range (overflow,
underflow, NaN) is rolled back and redone exactly in the log domain. Where nothing overflows, it
costs one check per block on top of the kernel method.

All tensors here are already validated, in the compute dtype, with masses as columns
``a (..., n, 1)``, ``b (..., m, 1)`` and potentials as columns too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

CHECK_EVERY = 10  # iterations between stability / stopping checks (POT checks every 10 too)


@dataclass
class LoopOutput:
    u: Tensor  # (..., n, 1) scalings relative to alpha
    v: Tensor  # (..., m, 1)
    alpha: Tensor  # (..., n, 1) absorbed row potential
    beta: Tensor  # (..., m, 1)
    K: Tensor  # (..., n, m) kernel exp((alpha + beta - C) / reg)
    n_iters: int
    errors: list[Tensor] = field(default_factory=list)  # each (...,): row L1 error per iteration
    f_history: list[Tensor] = field(default_factory=list)  # each (..., n, 1)
    g_history: list[Tensor] = field(default_factory=list)  # each (..., m, 1)
    n_log_blocks: int = 0  # how many blocks needed the exact log-domain fallback


def gibbs_kernel(C: Tensor, alpha: Tensor, beta: Tensor, reg: float) -> Tensor:
    """K~[i, j] = exp((alpha_i + beta_j - C_ij) / reg), shape (..., n, m)."""
    return torch.exp((alpha + beta.transpose(-1, -2) - C) / reg)


def _safe_log(x: Tensor) -> Tensor:
    """log(x) with log(0) = -inf and a finite gradient everywhere (zero masses are allowed)."""
    positive = x > 0
    log_x = torch.log(torch.where(positive, x, torch.ones_like(x)))
    return log_x.masked_fill(~positive, -torch.inf)


def _finite_or_zero(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def matvecs(K: Tensor):
    """The two products of an iteration, ``v -> K v`` and ``u -> K^T u`` on columns.

    For many small problems a broadcast multiply-and-sum is several times faster on the CPU than
    batched BLAS matrix-vector calls (bench/: 256 problems of 32 x 32); one large problem goes
    to BLAS.
    """
    n, m = K.shape[-2:]
    if K.dim() > 2 and K.numel() > n * m and n * m <= 128 * 128:
        return (lambda v: (K * v.transpose(-1, -2)).sum(-1, keepdim=True),
                lambda u: (K * u).sum(-2, keepdim=True).transpose(-1, -2))
    KT = K.transpose(-1, -2)
    return (lambda v: K @ v, lambda u: KT @ u)


def _scaling_block(K, a, b, u, v, n, guard, alpha, beta, reg, out: LoopOutput, record: bool):
    K_v, KT_u = matvecs(K)
    for _ in range(n):
        Kv = K_v(v)  # (..., n, 1)
        u = a / (Kv if guard is None else Kv.clamp_min(guard))
        KTu = KT_u(u)  # (..., m, 1)
        v = b / (KTu if guard is None else KTu.clamp_min(guard))
        if record:  # row sums of the new plan: u * (K v); columns are exact after the v-step
            out.errors.append((u * K_v(v) - a).abs().sum((-2, -1)))
            out.f_history.append(alpha + reg * torch.log(u))
            out.g_history.append(beta + reg * torch.log(v))
    return u, v


def _log_block(C, log_a, log_b, f, g, n, reg, out: LoopOutput, record: bool):
    for _ in range(n):
        f = reg * (log_a - torch.logsumexp((g.transpose(-1, -2) - C) / reg, dim=-1, keepdim=True))
        g = reg * (log_b - torch.logsumexp((f - C) / reg, dim=-2, keepdim=True).transpose(-1, -2))
        if record:
            row_log_mass = f / reg + torch.logsumexp(
                (g.transpose(-1, -2) - C) / reg, dim=-1, keepdim=True
            )
            out.errors.append((torch.exp(row_log_mass) - torch.exp(log_a)).abs().sum((-2, -1)))
            out.f_history.append(f)
            out.g_history.append(g)
    return f, g


def _scalings_ok(u: Tensor, v: Tensor, a_pos: Tensor, b_pos: Tensor, bound: float) -> bool:
    """True when every scaling of positive mass has |log| <= bound (False on NaN or inf)."""
    lu = torch.log(u).abs().masked_fill(~a_pos, 0.0)
    lv = torch.log(v).abs().masked_fill(~b_pos, 0.0)
    return bool(((lu <= bound).all() & (lv <= bound).all()).item())


def _row_error(K: Tensor, a: Tensor, u: Tensor, v: Tensor) -> float:
    """Largest L1 error of the plan's row marginal over the batch."""
    return float((u * (K @ v) - a).abs().sum((-2, -1)).max().item())


def run(
    C: Tensor, a: Tensor, b: Tensor, reg: float, n_iters: int, tol: float,
    stabilized: bool, record: bool,
) -> LoopOutput:
    """Run up to ``n_iters`` Sinkhorn iterations (rows then columns), stopping early on ``tol``."""
    finfo = torch.finfo(C.dtype)
    bound = 0.5 * math.log(finfo.max)  # keep scalings far from overflow
    absorb_at = bound / 4  # absorb well before that so products u * K * v stay representable
    alpha = torch.zeros_like(a)
    beta = torch.zeros_like(b)
    u, v = torch.ones_like(a), torch.ones_like(b)
    K = torch.exp(-C / reg)  # gibbs_kernel at alpha = beta = 0, bit for bit, without 2 temporaries
    out = LoopOutput(u, v, alpha, beta, K, 0)
    guard = finfo.tiny if stabilized else None
    if stabilized:
        a_pos, b_pos = a > 0, b > 0
        log_a, log_b = _safe_log(a), _safe_log(b)

    done = 0
    backoff = skip = 0  # after an overflow, go straight to the log domain for 2^k blocks
    while done < n_iters:
        block = min(CHECK_EVERY, n_iters - done)
        if stabilized and skip > 0:
            alpha, beta = _log_block(C, log_a, log_b, _absorbed(alpha, u, a_pos, reg),
                                     _absorbed(beta, v, b_pos, reg), block, reg, out, record)
            u, v, K = _restart(C, alpha, beta, reg, a, b, guard)
            out.n_log_blocks += 1
            skip -= 1
            done += block
            if tol > 0 and _converged(out, record, K, a, u, v, tol):
                break
            continue
        u0, v0 = u, v
        n_recorded = len(out.errors)
        u, v = _scaling_block(K, a, b, u, v, block, guard, alpha, beta, reg, out, record)
        if stabilized and not _scalings_ok(u, v, a_pos, b_pos, bound):
            # Roll back: absorb the last good scalings, redo the block exactly in the log domain.
            del out.errors[n_recorded:], out.f_history[n_recorded:], out.g_history[n_recorded:]
            alpha, beta = _log_block(C, log_a, log_b, _absorbed(alpha, u0, a_pos, reg),
                                     _absorbed(beta, v0, b_pos, reg), block, reg, out, record)
            u, v, K = _restart(C, alpha, beta, reg, a, b, guard)
            out.n_log_blocks += 1
            backoff = min(backoff + 1, 4)
            skip = 2**backoff - 1
        elif stabilized and _needs_absorbing(u, v, a_pos, b_pos, absorb_at):
            alpha = alpha + reg * _safe_log(u)
            beta = beta + reg * _safe_log(v)
            u, v, K = _restart(C, alpha, beta, reg, a, b, guard)
        else:
            backoff = 0
        done += block
        if tol > 0 and _converged(out, record, K, a, u, v, tol):
            break

    out.u, out.v, out.alpha, out.beta, out.K, out.n_iters = u, v, alpha, beta, K, done
    return out


def _absorbed(potential, scaling, positive, reg):
    """potential + reg * log(scaling) as a log-block start (-inf where the mass is zero)."""
    merged = _finite_or_zero(potential + reg * torch.log(scaling))
    return merged.masked_fill(~positive, -torch.inf)


def _converged(out: LoopOutput, record: bool, K, a, u, v, tol: float) -> bool:
    err = out.errors[-1].max().item() if record else _row_error(K, a, u, v)
    return err <= tol


def _restart(C, alpha, beta, reg, a, b, guard):
    """Kernel on freshly absorbed potentials, with one column step: exp() of the absorbed
    potentials carries round-off (relative eps * |alpha + beta - C| / reg, large in float32 at
    small reg), and the column step makes the columns exact again, as after any iteration."""
    K = gibbs_kernel(C, alpha, beta, reg)
    u = torch.ones_like(a)
    v = b / (K.transpose(-1, -2) @ u).clamp_min(guard)
    return u, v, K


def _needs_absorbing(u, v, a_pos, b_pos, absorb_at: float) -> bool:
    return not _scalings_ok(u, v, a_pos, b_pos, absorb_at)
