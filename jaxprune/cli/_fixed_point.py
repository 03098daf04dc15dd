"""`jaxprune fixed-point`: the stationary state of the SGD ODEs, its stability and its derivatives."""

from __future__ import annotations

import math

import jax
import numpy as np

from .. import SGDConfig, Status, describe, fixed_point_from_ode, solve_fixed_point
from ._common import (
    CommandFailed,
    add_output_options,
    add_problem_options,
    positive_float,
    positive_int,
    problem_from_args,
    write_json,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fixed-point",
        help="fixed point of the ODEs (warm-up ODE run, then Newton), eigenvalues and gradients",
        description="Run the ODEs to --alpha from the initial state (or --init), then polish the end state with "
                    "a Newton / Levenberg-Marquardt root finder. Prints the noise-free eps_g*, the status, the "
                    "slowest Jacobian eigenvalue, and with --grad the implicit derivatives of eps_g*.",
    )
    add_problem_options(p)
    p.add_argument("--alpha", type=positive_float, default=1000.0,
                   help="length of the warm-up ODE run (default 1000)")
    p.add_argument("--no-warmup", action="store_true", help="start the root finder at the initial state itself")
    p.add_argument("--max-steps", type=positive_int, default=256, help="root-finder steps (default 256)")
    p.add_argument("--grad", action="store_true",
                   help="print d eps_g*/d(eta, eta_v, sigma, v_star, T) (implicit function theorem)")
    add_output_options(p, plot=False)
    p.set_defaults(func=run)


def run(args) -> int:
    """Exit 0 for a converged fixed point (SUCCESS, or SINGULAR: marginal); otherwise the status is printed
    first, no eps_g* is printed as if valid (the last iterate's value is labelled as such), the JSON is still
    written (with `"ok": false`, `"eps_g": null`), and the command exits 1 with one line on stderr."""
    state0, config = problem_from_args(args)

    # both solvers are jitted (options static, state and config traced): a rerun with other numbers reuses them
    if args.no_warmup:
        res = solve_fixed_point(state0, config, max_steps=args.max_steps, throw=False)
    else:
        res = fixed_point_from_ode(state0, config, alpha=args.alpha, max_steps=args.max_steps, throw=False)
    status = int(res.status)
    lam = complex(res.slowest_eigenvalue)
    eps = float(res.eps_g)
    finite = math.isfinite(eps) and all(np.all(np.isfinite(np.asarray(getattr(res.state, k))))
                                        for k in ("Q", "R", "v"))
    converged = status in (Status.SUCCESS, Status.SINGULAR) and finite
    has_value = converged or (status == Status.UNSTABLE and finite)  # a saddle is a genuine stationary point
    failure = None if converged else (describe(status) if finite or status != Status.SUCCESS
                                      else "non-finite state or eps_g")
    payload = {
        "ok": converged,
        "eps_g": eps if has_value else None, "eps_g_last_iterate": eps,
        "status": status, "status_words": describe(status) if failure is None else f"failed: {failure}",
        "residual_norm": float(res.residual_norm),
        "eigenvalues": {"real": np.real(res.eigenvalues), "imag": np.imag(res.eigenvalues)},
        "slowest_eigenvalue": {"real": lam.real, "imag": lam.imag}, "stable": bool(res.stable),
        "used_fallback": bool(res.used_fallback),
        "state": {k: np.asarray(getattr(res.state, k)) for k in ("Q", "R", "T", "v", "v_star")},
        "config": {"eta": float(config.eta), "eta_v": float(config.eta_v), "sigma": float(config.sigma),
                   "weight_decay": float(config.weight_decay), "mode": config.mode},
        "alpha": None if args.no_warmup else args.alpha,
    }
    print(f"status: {describe(status) if failure is None else 'FAILED: ' + failure}")
    if has_value:
        print(f"eps_g* = {eps:.10g}  (noise-free generalisation error; test MSE = 2 eps_g + sigma^2)")
    else:
        print(f"eps_g* = not available: no fixed point was found (the last iterate's eps_g = {eps:.6g} is not a "
              f"fixed-point value)")
    if status == Status.SINGULAR:
        print("  (marginal: a Jacobian eigenvalue has real part within the tolerance band around 0: a continuum "
              "of fixed points or a neutral direction; linear stability is undecided)")
    elif status == Status.UNSTABLE:
        n_up = int(np.sum(np.real(np.asarray(res.eigenvalues)) > 0))
        print(f"  (a saddle: {n_up} eigenvalue(s) with positive real part; e.g. duplicated units split apart)")
    print(f"slowest eigenvalue: {lam.real:.6g}{lam.imag:+.6g}j   residual: {float(res.residual_norm):.3g}")
    if args.grad and not converged:
        print("gradients: not computed (they need a converged fixed point)")
        payload["gradients"] = None
    elif args.grad:
        start = res.state  # already at the fixed point: Newton converges at once; gradients are implicit

        def eps_of(params):
            c = SGDConfig(eta=params["eta"], eta_v=params["eta_v"], sigma=params["sigma"],
                          weight_decay=config.weight_decay, mode=config.mode, activation=config.activation)
            s = type(start)(Q=start.Q, R=start.R, T=params["T"], v=start.v, v_star=params["v_star"])
            return solve_fixed_point(s, c, max_steps=args.max_steps, throw=False).eps_g

        params = {"eta": config.eta, "eta_v": config.eta_v, "sigma": config.sigma, "v_star": start.v_star,
                  "T": start.T}
        grads = jax.jit(jax.grad(eps_of))(params)
        grads = {k: np.asarray(v) for k, v in grads.items()}
        if config.mode == "scm":
            grads["eta_v"] = np.asarray(0.0)
        for k in ("eta", "eta_v", "sigma", "v_star", "T"):
            print(f"d eps_g*/d {k} = {np.array2string(grads[k], precision=6)}")
        payload["gradients"] = grads
    write_json(args.json, payload)
    if failure is not None:
        raise CommandFailed(f"fixed point: {failure} (residual {float(res.residual_norm):.3g})")
    return 0
