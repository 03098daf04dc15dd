"""`jaxprune error`, `jaxprune ode`, `jaxprune simulate`."""

from __future__ import annotations

import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import (
    Status,
    alpha_grid,
    describe,
    generalisation_error,
    get_activation,
    init_student,
    make_teacher,
    overlaps_from_weights,
    simulate,
    solve_ode,
    test_mse,
)
from ._common import (
    CLIError,
    CommandFailed,
    Progress,
    add_output_options,
    add_problem_options,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    load_state_file,
    problem_from_args,
    save_plot,
    write_json,
)


def register(sub) -> None:
    p = sub.add_parser("error", help="generalisation error of a state file",
                       description="Print the noise-free generalisation error eps_g of a JSON state "
                                   "{Q, R, T, v, v_star}, and the noisy test MSE 2 eps_g + sigma^2.")
    p.add_argument("state", help="state JSON file")
    p.add_argument("--sigma", type=nonnegative_float, default=0.0, help="label-noise std for the test MSE")
    p.add_argument("--activation", choices=("erf", "linear"), default="erf")
    add_output_options(p, plot=False)
    p.set_defaults(func=run_error)

    p = sub.add_parser("ode", help="integrate the order-parameter ODEs of online SGD",
                       description="Integrate the ODEs of online SGD for the overlaps (docs/theory.md section 4) "
                                   "and print the noise-free generalisation error along the way.")
    add_problem_options(p)
    g = p.add_argument_group("integration")
    g.add_argument("--alpha", type=positive_float, default=1000.0, help="final time alpha = steps/N (default 1000)")
    g.add_argument("--integrator", choices=("euler", "tsit5", "dopri5", "dopri8", "bosh3"), default="tsit5")
    g.add_argument("--dt", type=positive_float, default=0.01, help="Euler step (default 0.01)")
    g.add_argument("--rtol", type=positive_float, default=1e-8)
    g.add_argument("--atol", type=positive_float, default=1e-10)
    g.add_argument("--points", type=positive_int, default=60, help="output times (default 60)")
    g.add_argument("--spacing", choices=("log", "linear"), default="log")
    add_output_options(p)
    p.set_defaults(func=run_ode)

    p = sub.add_parser("simulate", help="finite-N online SGD, compared with the ODE",
                       description="Simulate online SGD of a student on a teacher at finite N and record "
                                   "the exact error from the current overlaps (and, with --test-samples, the "
                                   "empirical noisy test MSE).")
    add_problem_options(p, K=2, M=2)
    g = p.add_argument_group("simulation")
    g.add_argument("--N", type=positive_int, default=1000, help="input dimension (default 1000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--seeds", type=positive_int, default=1, help="independent runs, vmapped (default 1)")
    g.add_argument("--steps", type=positive_int, default=None, help="SGD steps (default alpha * N)")
    g.add_argument("--alpha", type=positive_float, default=20.0, help="final time if --steps is not given")
    g.add_argument("--records", type=positive_int, default=50, help="recording points (default 50)")
    g.add_argument("--test-samples", type=nonnegative_int, default=0,
                   help="held-out samples for the empirical noisy test MSE (default 0: none)")
    g.add_argument("--float64", action="store_true", help="simulate in float64 (default float32)")
    g.add_argument("--no-ode", action="store_true", help="skip the ODE comparison")
    add_output_options(p)
    p.set_defaults(func=run_simulate)


def _state_dict(state) -> dict:
    return {k: np.asarray(getattr(state, k)) for k in ("Q", "R", "T", "v", "v_star")}


def run_error(args) -> int:
    state = load_state_file(args.state)
    act = get_activation(args.activation)
    eps = float(generalisation_error(state, act))
    mse = float(test_mse(state, args.sigma, act))
    finite = math.isfinite(eps) and math.isfinite(mse)
    print(f"K={state.K} M={state.M} activation={act.name}")
    what = f"eps_g = {eps}" if not math.isfinite(eps) else f"the test MSE 2 eps_g + sigma^2 = {mse}"
    if not finite:
        print(f"status: FAILED: {what} is not finite (overflow)")
    print(f"eps_g (noise-free generalisation error) = {eps:.10g}")
    print(f"test MSE on noisy labels (2 eps_g + sigma^2, sigma={args.sigma:g}) = {mse:.10g}")
    write_json(args.json, {"eps_g": eps, "test_mse": mse, "sigma": args.sigma, "K": state.K, "M": state.M,
                           "status": "success" if finite else "non-finite"})
    if not finite:
        raise CommandFailed(f"{what} for {args.state} is not finite (overflow at this scale)")
    return 0


def _flag_names(message: str) -> str:
    """A library message about `dt`, `rtol`, ... with the command-line spelling `--dt`, `--rtol`, ..."""
    return re.sub(r"^(dt|rtol|atol|alpha|alphas|max_steps)\b", lambda m: "--" + m.group(1).replace("_", "-"),
                  message)


def _print_curve(alphas, eps, every: int) -> None:
    print(f"{'alpha':>12}  {'eps_g':>14}")
    idx = list(range(0, len(alphas), every))
    if idx[-1] != len(alphas) - 1:
        idx.append(len(alphas) - 1)
    for i in idx:
        print(f"{alphas[i]:12.5g}  {eps[i]:14.8g}")


def run_ode(args) -> int:
    state, config = problem_from_args(args)
    grid = alpha_grid(args.alpha, max(args.points, 2), spacing=args.spacing,
                      first=min(args.dt, args.alpha / 10) if args.spacing == "log" else None)
    t0 = time.perf_counter()
    with Progress(1, "integrating", enabled=not args.quiet) as bar:
        try:  # options the solver refuses (an Euler step longer than the run, ...) are bad input
            sol = solve_ode(state, config, grid, integrator=args.integrator, dt=args.dt, rtol=args.rtol,
                            atol=args.atol, max_steps=max(100_000, int(2 * args.alpha / args.dt) + 10)
                            if args.integrator == "euler" else 100_000, throw=False)
        except ValueError as e:
            raise CLIError(_flag_names(str(e))) from None
        sol = jax.device_get(sol)  # NumPy leaves: the printing below runs no JAX operation (none to compile)
        bar.update()
    seconds = time.perf_counter() - t0
    alphas, eps = np.asarray(sol.alphas), np.asarray(sol.eps_g)
    status = int(sol.status)
    final = sol.final
    failure = _ode_failure(status, float(sol.alpha_end), int(sol.num_steps), eps, args.alpha)
    if not args.quiet:
        print(f"ODE of online SGD: K={state.K} M={state.M} mode={config.mode} eta={float(config.eta):g} "
              f"eta_v={float(config.eta_v):g} sigma={float(config.sigma):g} integrator={args.integrator}")
        print("error reported: eps_g = noise-free generalisation error (test MSE on noisy labels = "
              "2 eps_g + sigma^2)")
        _print_curve(alphas, eps, max(1, len(alphas) // 15))
    print(f"status: {'FAILED: ' + failure if failure else describe(status)}; final alpha "
          f"{float(sol.alpha_end):.6g}; steps {int(sol.num_steps)}; {seconds:.2f} s (including compilation)")
    print(f"final eps_g = {eps[-1]:.10g}" + (" (NOT VALID: the integration failed)" if failure else ""))
    if not args.quiet:
        np.set_printoptions(precision=5, suppress=True)
        print("final Q =\n" + str(np.asarray(final.Q)))
        print("final R =\n" + str(np.asarray(final.R)))
        print("final v = " + str(np.asarray(final.v)))
    write_json(args.json, {
        "alpha": alphas, "eps_g": eps, "status": status,
        "status_words": f"failed: {failure}" if failure else describe(status), "ok": not failure,
        "alpha_end": float(sol.alpha_end), "final_state": _state_dict(final),
        "config": {"K": state.K, "M": state.M, "eta": float(config.eta), "eta_v": float(config.eta_v),
                   "sigma": float(config.sigma), "weight_decay": float(config.weight_decay),
                   "mode": config.mode, "activation": config.activation.name,
                   "integrator": args.integrator, "dt": args.dt},
    })
    if getattr(args, "plot", None) is not None:
        from ..experiments._figures import error_curve_figure

        fig = error_curve_figure([(alphas, eps, f"ODE ({args.integrator})")],
                                 title=f"K={state.K}, M={state.M}, eta={float(config.eta):g}, "
                                       f"sigma={float(config.sigma):g}")
        save_plot(fig, args.plot)
        print(f"plot written to {args.plot}")
    if failure:
        raise CommandFailed(f"ODE integration: {failure}")
    return 0


def _ode_failure(status: int, alpha_end: float, num_steps: int, eps: np.ndarray, alpha: float) -> str | None:
    """Why an ODE solve is not a valid result (None if it is): a failure status, no step taken, the final time
    not reached, or a non-finite error, whatever the solver's status says."""

    if status != Status.SUCCESS:
        return describe(status)
    if num_steps == 0:
        return "the solver took no step (step size larger than the interval?)"
    if not alpha_end >= alpha * (1 - 1e-9):
        return f"stopped at alpha {alpha_end:.6g} before the final alpha {alpha:g}"
    if not np.all(np.isfinite(eps)):
        return "non-finite eps_g"
    return None


def run_simulate(args) -> int:
    if args.init is not None:
        raise CLIError("--init is not supported by simulate (it needs weights, not overlaps)")
    _, config = problem_from_args(args)
    steps = args.steps if args.steps is not None else int(round(args.alpha * args.N))
    record_every = max(1, steps // args.records)
    steps = record_every * max(1, steps // record_every)
    dtype = jnp.float64 if args.float64 else jnp.float32
    vs = 1.0 if args.v_star is None else (args.v_star if args.v_star.size > 1 else float(args.v_star[0]))
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)

    def one(key):
        kt, ks, kr = jax.random.split(key, 3)
        teacher = make_teacher(kt, args.N, args.M, v_star=vs, dtype=dtype)
        student = init_student(ks, args.N, args.K, scale=args.init_scale, dtype=dtype)
        return simulate(kr, teacher, student, config, steps=steps, record_every=record_every,
                        test_samples=args.test_samples), teacher, student

    t0 = time.perf_counter()
    with Progress(1, "simulating", enabled=not args.quiet) as bar:
        res, teacher, student = jax.block_until_ready(jax.jit(jax.vmap(one))(keys))
        bar.update()
    seconds = time.perf_counter() - t0
    alphas = np.asarray(res.alphas[0])
    eps = np.asarray(res.eps_g)  # (seeds, T)
    mean = eps.mean(axis=0)
    curves = [(alphas, mean, f"simulation N={args.N} ({args.seeds} seed{'s' * (args.seeds > 1)})")]
    bands = [(alphas, eps.min(axis=0), eps.max(axis=0)) if args.seeds > 1 else None]
    payload = {"alpha": alphas, "eps_g": eps, "eps_g_mean": mean, "status": np.asarray(res.status),
               "N": args.N, "steps": steps, "seeds": args.seeds}
    if args.test_samples:
        payload["test_mse"] = np.asarray(res.test_mse)
    ode_eps, ode_failure = None, None
    if not args.no_ode:
        # seed 0's initial overlaps (its weights are already indexed), in float64 for the ODE
        s0 = jax.tree.map(lambda x: x.astype(jnp.result_type(float)),
                          overlaps_from_weights(student.w[0], teacher.w_star[0], student.v[0], teacher.v_star[0]))
        sol = solve_ode(s0, config, alphas.astype(float), throw=False)
        ode_eps = np.asarray(sol.eps_g)
        ode_failure = _ode_failure(int(sol.status), float(sol.alpha_end), int(sol.num_steps), ode_eps,
                                   float(alphas[-1]))
        payload["ode_status_words"] = f"failed: {ode_failure}" if ode_failure else describe(int(sol.status))
        curves.append((alphas, ode_eps, "ODE (same initial overlaps as seed 0)"))
        bands.append(None)
        payload["ode_eps_g"] = ode_eps
    if not args.quiet:
        print(f"finite-N online SGD: N={args.N} K={args.K} M={args.M} mode={config.mode} "
              f"eta={float(config.eta):g} sigma={float(config.sigma):g} steps={steps} seeds={args.seeds}")
        print("error reported: eps_g = noise-free generalisation error from the current overlaps")
        every = max(1, len(alphas) // 12)
        print(f"{'alpha':>10}  {'eps_g sim':>12}" + ("  {:>12}".format("eps_g ODE") if ode_eps is not None else ""))
        for i in sorted(set(range(0, len(alphas), every)) | {len(alphas) - 1}):
            line = f"{alphas[i]:10.4g}  {mean[i]:12.6g}"
            if ode_eps is not None:
                line += f"  {ode_eps[i]:12.6g}"
            print(line)
    statuses = np.asarray(res.status).ravel()
    sim_failed = not (np.all(statuses == 0) and np.all(np.isfinite(eps)))
    words = ", ".join(sorted({describe(s) for s in statuses}))
    print(f"status: {'FAILED: ' if sim_failed else ''}{words}; {seconds:.2f} s "
          f"({args.seeds * steps / seconds:.3g} SGD steps/s incl. compilation)")
    if ode_failure:
        print(f"ODE comparison: FAILED: {ode_failure} (its column is not valid)")
    print(f"final eps_g (mean over seeds) = {mean[-1]:.8g}" + (" (NOT VALID)" if sim_failed else ""))
    write_json(args.json, payload)
    if getattr(args, "plot", None) is not None:
        from ..experiments._figures import error_curve_figure

        fig = error_curve_figure(curves, bands=bands, title=f"N={args.N}, K={args.K}, M={args.M}")
        save_plot(fig, args.plot)
        print(f"plot written to {args.plot}")
    if sim_failed:
        raise CommandFailed(f"simulation: {words}" + ("" if np.all(np.isfinite(eps)) else "; non-finite eps_g"))
    if ode_failure:
        raise CommandFailed(f"ODE comparison: {ode_failure}")
    return 0
