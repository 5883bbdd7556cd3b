"""The Sinkhorn iteration loop shared by the kernel and the log-domain methods, torch and numpy.

One loop, two kinds of block (geomloss style: the update is passed in, the loop is written once):

- a *scaling block* runs plain Sinkhorn iterations ``u = a / (K v)``, ``v = b / (K^T u)`` on a
  kernel ``K``: two matrix-vector products per iteration, the fast path;
- a *log block* runs the same iterations on the dual potentials with ``logsumexp``: exact for
  any ``reg`` and any dtype, several times slower.

The kernel method runs scaling blocks on ``K = exp(-C / reg)`` and nothing else (it underflows as
the reference code does). The log method is the stabilised scheme of Schmitzer (2019): scalings
are kept relative to absorbed potentials ``alpha, beta`` (``K~ = exp((alpha + beta - C) / reg)``),
absorbed into them when they grow, and any block whose scalings leave a safe range (overflow,
underflow, NaN) is rolled back and redone exactly in the log domain. Where nothing overflows, its
scaling blocks are the kernel method's, plus one range check (the scalings' min and max) per block.

The loop is written once for both array libraries as well: everything it does to arrays goes
through a *steps* object, :data:`TORCH` here (masses, scalings and potentials as columns
``(..., n, 1)``, autograd through every step) or ``sinkd._numpy_iterations.NUMPY`` (numpy
inputs: vectors ``(..., n)``, in-place updates, no autograd). The steps objects also carry what
:func:`sinkd.sinkhorn` needs around the loop (conversion, validation reductions, plan, cost).

All arrays here are already validated, in the compute dtype.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

CHECK_EVERY = 10  # iterations between stability / stopping checks (POT checks every 10 too)


@dataclass
class LoopOutput:
    u: Tensor  # (..., n, 1) scalings relative to alpha ((..., n) for numpy)
    v: Tensor  # (..., m, 1)
    alpha: Tensor  # (..., n, 1) absorbed row potential
    beta: Tensor  # (..., m, 1)
    K: Tensor  # (..., n, m) kernel exp((alpha + beta - C) / reg)
    n_iters: int
    errors: list[Tensor] = field(default_factory=list)  # each (...,): row L1 error per iteration
    f_history: list[Tensor] = field(default_factory=list)  # each (..., n, 1)
    g_history: list[Tensor] = field(default_factory=list)  # each (..., m, 1)
    n_log_blocks: int = 0  # how many blocks needed the exact log-domain fallback


def run(C, a, b, reg: float, n_iters: int, tol: float, stabilized: bool, record: bool,
        steps=None, masses_positive: bool = False, K=None) -> LoopOutput:
    """Run up to ``n_iters`` Sinkhorn iterations (rows then columns), stopping early on ``tol``.

    ``steps`` does the array work (:data:`TORCH` by default); ``a`` and ``b`` are in its layout.
    ``masses_positive=True`` (known from validation) spares the loop looking for zero masses;
    ``K``, the kernel ``exp(-C / reg)`` where validation computed it (it is overwritten).
    """
    steps = TORCH if steps is None else steps
    finfo = steps.finfo(C)
    bound = 0.5 * math.log(finfo.max)  # keep scalings far from overflow
    absorb_at = bound / 4  # absorb well before that so products u * K * v stay representable
    # |log s| <= x  <=>  exp(-x) <= s <= exp(x): tested on the scalings' extremes (NaN fails)
    safe = (math.exp(-bound), math.exp(bound))
    small = (math.exp(-absorb_at), math.exp(absorb_at))
    alpha, beta = steps.zeros_like(a), steps.zeros_like(b)
    u, v = steps.ones_like(a), steps.ones_like(b)
    K = steps.kernel(C, reg) if K is None else K
    out = LoopOutput(u, v, alpha, beta, K, 0)
    guard = a_pos = b_pos = None
    if stabilized and not masses_positive:
        a_pos, b_pos = steps.positive(a), steps.positive(b)  # None when every mass is > 0
        if a_pos is not None or b_pos is not None:
            guard = finfo.tiny  # a zero mass on an underflowed kernel row: 0 / 0 would spread NaN
    log_masses = None  # log a, log b: computed when a log block first needs them

    def log_block(f, g, block):
        nonlocal log_masses
        if log_masses is None:
            log_masses = steps.safe_log(a), steps.safe_log(b)
        return steps.log_block(C, *log_masses, f, g, block, reg, out, record)

    done = 0
    backoff = skip = 0  # after an overflow, go straight to the log domain for 2^k blocks
    while done < n_iters:
        block = min(CHECK_EVERY, n_iters - done)
        if stabilized and skip > 0:
            alpha, beta = log_block(steps.absorbed(alpha, u, a_pos, reg),
                                    steps.absorbed(beta, v, b_pos, reg), block)
            u, v, K = steps.restart(C, alpha, beta, reg, a, b, finfo.tiny)
            out.n_log_blocks += 1
            skip -= 1
            done += block
            if tol > 0 and _converged(steps, out, record, K, a, u, v, tol):
                break
            continue
        u0, v0 = u, v
        n_recorded = len(out.errors)
        # the steps may run blocks natively: up to one that needs the checks below, or (tol > 0)
        # the one block before the stopping test
        fast = None if record else steps.scaling_blocks(
            K, a, b, u, v, n_iters - done if tol == 0 else block, CHECK_EVERY, guard,
            small if stabilized else None)
        if fast is not None:
            u0, v0, u, v, before = fast
            if before:  # blocks before the last stayed inside the small range
                done += before
                backoff = 0
            block = min(CHECK_EVERY, n_iters - done)
        else:
            u, v = steps.scaling_block(K, a, b, u, v, block, guard, alpha, beta, reg, out, record)
        if stabilized:
            lo, hi = steps.extremes(u, v, a_pos, b_pos)
            if not (safe[0] <= lo and hi <= safe[1]):
                # Roll back: absorb the last good scalings, redo the block exactly in the log
                # domain.
                del out.errors[n_recorded:], out.f_history[n_recorded:], out.g_history[n_recorded:]
                alpha, beta = log_block(steps.absorbed(alpha, u0, a_pos, reg),
                                        steps.absorbed(beta, v0, b_pos, reg), block)
                u, v, K = steps.restart(C, alpha, beta, reg, a, b, finfo.tiny)
                out.n_log_blocks += 1
                backoff = min(backoff + 1, 4)
                skip = 2**backoff - 1
            elif not (small[0] <= lo and hi <= small[1]):
                # scalings of positive mass are > 0 here: only zero masses need the safe log
                alpha = alpha + reg * (steps.log(u) if a_pos is None else steps.safe_log(u))
                beta = beta + reg * (steps.log(v) if b_pos is None else steps.safe_log(v))
                u, v, K = steps.restart(C, alpha, beta, reg, a, b, finfo.tiny)
            else:
                backoff = 0
        done += block
        if tol > 0 and _converged(steps, out, record, K, a, u, v, tol):
            break

    out.u, out.v, out.alpha, out.beta, out.K, out.n_iters = u, v, alpha, beta, K, done
    return out


def _converged(steps, out: LoopOutput, record: bool, K, a, u, v, tol: float) -> bool:
    err = steps.last_error(out) if record else steps.row_error(K, a, u, v)
    return err <= tol


# ---------------------------------------------------------------------------------------------
# torch steps


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


class TorchSteps:
    """The loop's array work on torch tensors; masses, scalings, potentials as columns."""

    name = "torch"
    finfo = staticmethod(lambda x: torch.finfo(x.dtype))
    zeros_like = staticmethod(torch.zeros_like)
    ones_like = staticmethod(torch.ones_like)
    log = staticmethod(torch.log)
    safe_log = staticmethod(_safe_log)
    finite_or_zero = staticmethod(_finite_or_zero)

    @staticmethod
    def kernel(C: Tensor, reg: float) -> Tensor:
        return torch.exp(-C / reg)  # gibbs_kernel at alpha = beta = 0, bit for bit, fewer temps

    @staticmethod
    def positive(x: Tensor) -> Tensor | None:
        pos = x > 0
        return None if bool(pos.all()) else pos

    @staticmethod
    def scaling_block(K, a, b, u, v, n, guard, alpha, beta, reg, out: LoopOutput, record: bool):
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

    @staticmethod
    def scaling_blocks(K, a, b, u, v, n, block, guard, bounds):
        return None  # one block at a time: each iteration is a few torch calls anyway

    @staticmethod
    def log_block(C, log_a, log_b, f, g, n, reg, out: LoopOutput, record: bool):
        for _ in range(n):
            f = reg * (log_a - torch.logsumexp((g.transpose(-1, -2) - C) / reg, dim=-1,
                                               keepdim=True))
            g = reg * (log_b - torch.logsumexp((f - C) / reg, dim=-2,
                                               keepdim=True).transpose(-1, -2))
            if record:
                row_log_mass = f / reg + torch.logsumexp(
                    (g.transpose(-1, -2) - C) / reg, dim=-1, keepdim=True
                )
                out.errors.append((torch.exp(row_log_mass) - torch.exp(log_a)).abs().sum((-2, -1)))
                out.f_history.append(f)
                out.g_history.append(g)
        return f, g

    @staticmethod
    def extremes(u, v, a_pos, b_pos) -> tuple[float, float]:
        """(min, max) over the scalings of positive mass (NaN if any is NaN)."""
        u = u if a_pos is None else u.where(a_pos, 1.0)
        v = v if b_pos is None else v.where(b_pos, 1.0)
        both = torch.cat((u, v), -2)
        if both.numel() == 0:
            return 1.0, 1.0
        lo, hi = torch.aminmax(both)
        return lo.item(), hi.item()

    @staticmethod
    def absorbed(potential, scaling, positive, reg):
        """potential + reg * log(scaling) as a log-block start (-inf where the mass is zero)."""
        merged = _finite_or_zero(potential + reg * torch.log(scaling))
        return merged if positive is None else merged.masked_fill(~positive, -torch.inf)

    @staticmethod
    def restart(C, alpha, beta, reg, a, b, tiny):
        """Kernel on freshly absorbed potentials, with one column step: exp() of the absorbed
        potentials carries round-off (relative eps * |alpha + beta - C| / reg, large in float32
        at small reg), and the column step makes the columns exact again, as after any
        iteration."""
        K = gibbs_kernel(C, alpha, beta, reg)
        u = torch.ones_like(a)
        v = b / (K.transpose(-1, -2) @ u).clamp_min(tiny)
        return u, v, K

    @staticmethod
    def row_error(K, a, u, v) -> float:
        """Largest L1 error of the plan's row marginal over the batch."""
        return float((u * (K @ v) - a).abs().sum((-2, -1)).max().item())

    @staticmethod
    def last_error(out: LoopOutput) -> float:
        return out.errors[-1].max().item()

    # --- around the loop (sinkd.sinkhorn) ---

    @staticmethod
    def quiet():
        return contextlib.nullcontext()

    @staticmethod
    def as_array(x, name: str, like: Tensor | None) -> Tensor:
        """``x`` as a tensor: a cost in a floating dtype, masses in the cost's dtype, device."""
        if isinstance(x, Tensor):
            t = x
        else:
            try:
                t = torch.as_tensor(np.asarray(x))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{name} must be a tensor or an array of numbers: {err}") from None
        if like is not None:
            same = t.dtype == like.dtype and t.device == like.device
            return t if same else t.to(device=like.device, dtype=like.dtype)
        if not t.is_floating_point():
            t = t.to(torch.get_default_dtype() if isinstance(x, Tensor) else torch.float64)
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()  # low precision is computed in float32 and returned in the input dtype
        return t

    @staticmethod
    def full(n: int, value: float, like: Tensor) -> Tensor:
        return torch.full((n,), value, dtype=like.dtype, device=like.device)

    @classmethod
    def range_and_kernel(cls, C: Tensor, reg: float) -> tuple[float, float, None]:
        """C's (min, max); the kernel is computed in the loop (it may need autograd)."""
        return (*cls.value_range(C), None)

    @staticmethod
    def value_range(x: Tensor) -> tuple[float, float]:
        """(min, max) of x as floats, one reduction; NaN if x has a NaN."""
        if x.numel() == 0:
            return 0.0, 0.0
        return tuple(torch.stack(torch.aminmax(x.detach())).tolist())

    @staticmethod
    def floats(*xs: Tensor) -> list[float]:
        return torch.stack(xs).detach().tolist()  # one read-back for all

    @staticmethod
    def expand(x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return x.expand(*shape)

    @staticmethod
    def all_finite(x: Tensor) -> bool:
        return bool(torch.isfinite(x).all())

    def iterate(self, C, a, b, reg, n_iters, tol, stabilized, record, envelope,
                masses_positive=False, K=None) -> LoopOutput:
        with torch.no_grad() if envelope else torch.enable_grad():
            return run(C.detach() if envelope else C, a.unsqueeze(-1), b.unsqueeze(-1), reg,
                       n_iters, tol, stabilized, record, self, masses_positive, K)

    @classmethod
    def plan_and_transport(cls, loop: LoopOutput, C: Tensor, envelope: bool):
        P = cls.plan(loop)
        return P, cls.transport(P, C, envelope)

    @staticmethod
    def plan(loop: LoopOutput) -> Tensor:
        return loop.u * loop.K * loop.v.transpose(-1, -2)  # (..., n, m)

    @staticmethod
    def transport(P: Tensor, C: Tensor, envelope: bool) -> Tensor:
        return ((P.detach() if envelope else P) * C).sum((-2, -1))  # envelope: d/dC = P

    @staticmethod
    def potential(alpha: Tensor, u: Tensor, reg: float) -> Tensor:
        return (alpha + reg * _safe_log(u)).squeeze(-1)  # (..., n)

    @staticmethod
    def history(loop: LoopOutput, C: Tensor) -> dict:
        return dict(errors=torch.stack(loop.errors),
                    f_history=torch.stack(loop.f_history).squeeze(-1),
                    g_history=torch.stack(loop.g_history).squeeze(-1),
                    cost_matrix=C.detach())


TORCH = TorchSteps()
