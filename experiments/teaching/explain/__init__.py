"""``handgrad explain``: one backpropagation step of a small network, number by number.

For each weight (or the ones named with ``--param``) the chain rule is written out with
the numbers of manual/'s forward cache and traced backward, in the notation of the
classic 2-2-2 worked example (net = weighted input sum, out = activation):

    output layer   ∂E/∂w = ∂E/∂out_o · ∂out_o/∂net_o · ∂net_o/∂w          ∂net_o/∂w = out_h
    hidden layer   ∂E/∂out_h = Σ_o ∂E/∂out_o · ∂out_o/∂net_o · w_oh        (written out)
                   ∂E/∂w = ∂E/∂out_h · ∂out_h/∂net_h · ∂net_h/∂w           ∂net_h/∂w = out_i

summed over the batch when it holds more than one sample: δ = ∂E/∂net = ∂E/∂out ⊙ f'(out),
∂E/∂W = δᵀ a_{l-1}, ∂E/∂a_{l-1} = δ W, each factor as ``manual.MLP.backward`` computed it
(its ``LayerTrace``). Next to every gradient stands autograd's (torch_impl) and the
difference; then the update w⁺ = w − lr·∂E/∂w, next to torch.optim.SGD's.

Update order. The derivation computes every δ at the weights the step starts from and
then moves all weights ("simultaneous"; autograd + torch.optim.SGD do exactly this).
A hand implementation may instead update the output weights first and backpropagate
through the *new* ones ("sequential"). ``update_order_table`` trains both orders (and
torch) and checks which of the published 2-2-2 figures each reproduces.

The published text mixes the orders (worked.py says which figure is whose).

Everything runs on the explained batch: the config's first batch (the full batch for the
named small experiments), on the CPU, in the config's dtype.

    model.py    the explanation as data (``prepare``, ``explain``, ``Explanation``)
    render.py   text, markdown and csv renderers: Explanation (+ table) -> str
    html.py     the html page: the first K steps' explanations in one self-contained file
    page.py     that page's CSS and (display-only) JavaScript
    diagram.py  the network drawn with its numbers (``--figure``)
    worked.py   both update orders trained by the engine; the published 2-2-2 figures
"""

from __future__ import annotations

from pathlib import Path

from experiments.core.config import ConfigError, load_config
from experiments.core.schema import EXPLAIN_COLUMNS as CSV_COLUMNS
from experiments.teaching.boundary.learner import CONVENTIONS

from .html import MAX_PAGE_STEPS, default_params, explain_steps, render_html
from .model import ORDERS, Explanation, explain, param_name, parse_param, plain, prepare
from .render import FORMATS, explanation_rows, render
from .worked import PUBLISHED, update_order_notes, update_order_table

__all__ = ["CSV_COLUMNS", "ORDERS", "PUBLISHED", "Explanation", "draw_network", "explain",
           "explanation_rows", "param_name", "parse_param", "prepare", "register", "render",
           "update_order_notes", "update_order_table"]

def __getattr__(name: str):
    """``draw_network``, imported on first use: the diagram needs matplotlib and seaborn
    (seconds to import), which the text, markdown, csv and html outputs do without."""
    if name == "draw_network":
        from .diagram import draw_network
        return draw_network
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


HTML_STEPS = 10   # the steps an html page holds unless --steps says otherwise


def register(subparsers, formatter_class, help: str = "") -> None:
    """Add ``handgrad explain`` to the CLI (experiments.cli.FEATURES)."""
    p = subparsers.add_parser(
        "explain", formatter_class=formatter_class,
        help=help,
        description="One backpropagation step of a small network, by hand and with numbers:\n"
                    "the forward pass (net and out of every neuron), the error, each weight's\n"
                    "chain-rule product (from manual/'s forward cache) next to autograd's\n"
                    "gradient, the update w⁺ = w − lr·∂E/∂w next to torch.optim.SGD's, and\n"
                    "which update order (simultaneous or sequential) reproduces which\n"
                    "published figure of the 2-2-2 worked example.\n\n"
                    "  handgrad explain                          # the 2-2-2 worked example\n"
                    "  handgrad explain --param w1 --steps 10000\n"
                    "  handgrad explain seed --format markdown --figure seed.png")
    p.add_argument("experiment", nargs="?", default="worked-2-2-2", metavar="NAME|CONFIG.toml",
                   help="a named experiment (see `handgrad list`) or a TOML config")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--param", dest="params", action="append", default=None,
                   metavar="KEY[i,j]", help="explain only this parameter (repeatable): "
                   "layers.1.weight[0,0], a whole tensor layers.1.weight, in the course "
                   "notebooks' names W2[0,0] (W_l of shape (in, out)), b2, W1, or w1 … w8 on "
                   "a 2-2-2 network (default: every trainable parameter)")
    p.add_argument("--convention", default=None, metavar="torch|W1b1|FILE.py",
                   help="the names shown: handgrad's keys (torch) or W1, b1, a1, z1 with W_l "
                        "of shape (in, out) (W1b1), or the CONVENTION a learner's file sets "
                        "(read, never run); default: the one --param is written in")
    p.add_argument("--update-order", choices=ORDERS, default="simultaneous",
                   help="the order the explained gradients and update use")
    p.add_argument("--format", choices=(*FORMATS, "html"), default="text",
                   help="output format; html: one self-contained page (network, chain rule "
                        "per weight, the first --steps steps), see docs/html.md")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="write the output to this file instead of stdout")
    p.add_argument("--figure", type=Path, default=None, metavar="PATH",
                   help="also draw the network with its numbers (PNG)")
    p.add_argument("--steps", type=int, default=None,
                   help="updates for the update-order comparison (default 1; the published "
                        "10,000-step figures need --steps 10000); with --format html also the "
                        f"steps the page steps through (default {HTML_STEPS}, at most "
                        f"{MAX_PAGE_STEPS})")
    p.set_defaults(func=cmd_explain)


def convention_of(text: str | None) -> str | None:
    """``--convention``: a convention's name, or a learner's file (``.py`` or ``.ipynb``)
    whose top-level ``CONVENTION = "..."`` is read from its syntax tree — never run —
    (``torch`` when it sets none)."""
    if text is None or text in CONVENTIONS:
        return text
    import ast
    import json
    path = Path(text)
    if path.suffix not in (".py", ".ipynb"):
        raise ConfigError(f"--convention {text!r}: choose one of {list(CONVENTIONS)} or a "
                          f"learner's .py or .ipynb file")
    try:
        source = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            source = "\n".join("".join(c.get("source", "")) for c in json.loads(source)["cells"]
                               if c.get("cell_type") == "code")
            source = "\n".join(ln for ln in source.splitlines() if ln.lstrip()[:1] not in "%!")
        tree = ast.parse(source)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, SyntaxError) as err:
        raise ConfigError(f"--convention {text}: cannot read its CONVENTION ({err})") from None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "CONVENTION"
                and isinstance(node.value, ast.Constant)):
            if node.value.value not in CONVENTIONS:
                raise ConfigError(f"--convention {text}: CONVENTION = {node.value.value!r}; "
                                  f"use one of {list(CONVENTIONS)}")
            return node.value.value
    return "torch"


def cmd_explain(args) -> int:
    cfg = load_config(args.experiment, args.overrides)
    convention = convention_of(args.convention)
    html = args.format == "html"
    steps = args.steps if args.steps is not None else (HTML_STEPS if html else 1)
    if steps < 1:
        raise ConfigError(f"--steps {steps}: the number of updates must be >= 1")
    for flag, path in (("--out", args.out), ("--figure", args.figure)):
        if path is not None and not path.parent.is_dir():
            raise ConfigError(f"{flag} {path}: folder {path.parent} does not exist")
        if path is not None and path.is_dir():
            raise ConfigError(f"{flag} {path} is a folder; give a file name in it, e.g. "
                              f"{path / ('net.png' if flag == '--figure' else 'explain.html')}")
    if html:
        if steps > MAX_PAGE_STEPS:
            raise ConfigError(f"--steps {steps}: the html page holds 1 … {MAX_PAGE_STEPS} "
                              f"steps (each one is a full explanation)")
        runs = explain_steps(cfg, default_params(cfg, args.params), args.update_order, steps,
                             convention)
        expl = runs[args.update_order][0]
    else:
        expl = explain(cfg, args.params, args.update_order, convention=convention)
    table = update_order_table(steps, cfg) if plain(expl.config) else None
    if table is None:
        expl.notes.append(f"update-order comparison skipped: it is defined for plain "
                          f"gradient descent (this config has momentum = "
                          f"{expl.config.momentum}, weight_decay = {expl.config.weight_decay})")
    text = render_html(runs, args.update_order, table) if html else render(expl, args.format, table)
    if args.figure is not None:
        from .diagram import draw_network
        draw_network(expl, args.figure)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    if args.figure is not None:
        print(f"wrote {args.figure}")
    return 0
