"""Read a user's ``torch.nn.Module`` into a :class:`~coopflower.crypto.graph.Structure`.

``torch.fx.symbolic_trace`` gives the forward pass as nodes; they must form one chain (each
operation takes the previous one's output; no branches or skip connections), made of:

- ``nn.Conv2d`` (groups 1, dilation 1, zero padding: int, tuple, ``"valid"`` or ``"same"``),
  ``nn.Linear``;
- ReLU: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``;
- pooling: ``nn.MaxPool2d`` / ``F.max_pool2d``, ``nn.AvgPool2d`` / ``F.avg_pool2d`` (no ceil
  mode, no dilation, no divisor override, ``count_include_pad`` when padded), and the adaptive
  versions when the input size divides evenly (resolved to fixed windows at trace time);
- flattening to ``(N, -1)``: ``nn.Flatten()``, ``torch.flatten(x, 1)``, ``x.flatten(1)``,
  ``x.view(-1, n)``, ``x.view(x.size(0), -1)``, ``x.reshape(...)`` of the same forms;
- ``nn.Identity``, dropout (module or functional: evaluation is at eval, where it is the
  identity), ``x.contiguous()``;
- softmax / log-softmax over the class axis, only last (monotone per row: the cipherspace pass
  returns the scores before it; argmax and accuracy are unchanged).

Anything else raises :class:`~coopflower.crypto.errors.UnsupportedOperation` naming the first
operation that is not supported, e.g. ``BatchNorm2d`` (not folded into the encrypted layer
here), ``sigmoid``/``tanh`` (only the key holder's inner-product key gives the paper's cubic
Taylor sigmoid, see ``activations``; not offered inside a model pass), additions or
concatenations (skip connections), or parameters read directly (``get_attr``).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from coopflower.crypto.errors import CipherFormatError, IVHEError, UnsupportedOperation
from coopflower.crypto.graph import LINEAR_KINDS, Op, Shape, Structure, step

__all__ = ["trace_structure", "first_layer_of", "infer_input_shape"]

_Raw = Op | tuple[str, tuple[int, int]]  # an Op, or ("maxpool"|"avgpool", adaptive output)
_SKIP = object()  # identity-like node: the chain goes through it unchanged


def _p2(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, tuple | list) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    if isinstance(v, tuple | list) and len(v) == 1 and isinstance(v[0], int):
        return (v[0], v[0])
    raise UnsupportedOperation(f"window parameter {v!r} is not an int or a pair")


def _pool(kind: str, a: Mapping[str, Any], where: str) -> Op:
    k = _p2(a["kernel_size"])
    s = _p2(a["stride"]) if a.get("stride") not in (None, [], ()) else k
    p = _p2(a.get("padding", 0))
    if a.get("ceil_mode") or _p2(a.get("dilation", 1)) != (1, 1) or a.get("return_indices"):
        raise UnsupportedOperation(f"{where}: ceil_mode, dilation and return_indices unsupported")
    if kind == "avgpool" and (a.get("divisor_override") is not None
                              or (p != (0, 0) and not a.get("count_include_pad", True))):
        raise UnsupportedOperation(f"{where}: divisor_override / count_include_pad=False")
    return Op(kind, kernel=k, stride=s, padding=p)


def _conv(mod: nn.Conv2d, name: str) -> Op:
    if mod.groups != 1 or tuple(mod.dilation) != (1, 1) or mod.padding_mode != "zeros":
        raise UnsupportedOperation(
            f"Conv2d (module {name!r}): only groups=1, dilation=1, zero padding are supported")
    pad: tuple[int, int] | str = mod.padding if isinstance(mod.padding, str) else _p2(mod.padding)
    if pad == "valid":
        pad = (0, 0)
    return Op("conv", name=name, kernel=_p2(mod.kernel_size), stride=_p2(mod.stride),
              padding=pad, bias=mod.bias is not None)


def _softmax_dim(dim: Any, where: str) -> Op:
    if dim not in (None, 1, -1):
        raise UnsupportedOperation(f"{where}: softmax over dim {dim} (only the class axis)")
    return Op("softmax")


def _module_op(mod: nn.Module, name: str) -> _Raw | object:
    where = f"{type(mod).__name__} (module {name!r})"
    if isinstance(mod, nn.Conv2d):
        return _conv(mod, name)
    if isinstance(mod, nn.Linear):
        return Op("linear", name=name, bias=mod.bias is not None)
    if isinstance(mod, nn.ReLU):
        return Op("relu")
    if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
        kind = "maxpool" if isinstance(mod, nn.MaxPool2d) else "avgpool"
        return _pool(kind, vars(mod), where)
    if isinstance(mod, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        kind = "maxpool" if isinstance(mod, nn.AdaptiveMaxPool2d) else "avgpool"
        return (kind, _p2(mod.output_size))
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim != -1:
            raise UnsupportedOperation(f"{where}: only Flatten(1, -1) is supported")
        return Op("flatten")
    if isinstance(mod, nn.Identity | nn.modules.dropout._DropoutNd):
        return _SKIP
    if isinstance(mod, nn.Softmax | nn.LogSoftmax):
        return _softmax_dim(mod.dim, where)
    raise UnsupportedOperation(f"{where} is not supported in cipherspace{_hint(type(mod))}")


def _hint(what: Any) -> str:
    name = getattr(what, "__name__", str(what)).lower()
    if "sigmoid" in name or "tanh" in name:
        return (" (only ReLU: the Taylor sigmoid needs the key holder's inner-product key,"
                " see coopflower.crypto.activations)")
    if "batchnorm" in name:
        return " (fold it into the neighbouring layer before encrypting)"
    return ""


def _bind(sig_fn: Callable[..., Any], node: fx.Node) -> dict[str, Any]:
    try:
        bound = inspect.signature(sig_fn).bind(*node.args, **node.kwargs)
    except TypeError as exc:
        raise UnsupportedOperation(f"{node.name}: unexpected arguments: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _sig_maxpool(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, ceil_mode: Any = False, return_indices: Any = False) -> None:
    """Signature of ``F.max_pool2d``."""


def _sig_avgpool(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: Any = False, count_include_pad: Any = True,
                 divisor_override: Any = None) -> None:
    """Signature of ``F.avg_pool2d``."""


def _sig_adaptive(input: Any, output_size: Any, return_indices: Any = False) -> None:
    """Signature of ``F.adaptive_*_pool2d``."""


def _sig_flatten(input: Any, start_dim: Any = 0, end_dim: Any = -1) -> None:
    """Signature of ``torch.flatten``."""


def _sig_softmax(input: Any, dim: Any = None, *args: Any, **kwargs: Any) -> None:
    """Signature of ``F.softmax``."""


_RELU_FNS = {F.relu, torch.relu, F.relu_, torch.relu_}
_DROPOUT_FNS = {F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout, torch.dropout}
_SOFTMAX_FNS = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}


def _function_op(node: fx.Node) -> _Raw | object:
    fn, where = node.target, f"{getattr(node.target, '__name__', node.target)} (node {node.name!r})"
    if fn in _RELU_FNS:
        return Op("relu")
    if fn in (F.max_pool2d, torch.max_pool2d):
        return _pool("maxpool", _bind(_sig_maxpool, node), where)
    if fn is F.avg_pool2d:
        return _pool("avgpool", _bind(_sig_avgpool, node), where)
    if fn in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        a = _bind(_sig_adaptive, node)
        if a["return_indices"]:
            raise UnsupportedOperation(f"{where}: return_indices")
        kind = "avgpool" if fn is F.adaptive_avg_pool2d else "maxpool"
        return (kind, _p2(a["output_size"]))
    if fn is torch.flatten:
        a = _bind(_sig_flatten, node)
        if a["start_dim"] != 1 or a["end_dim"] != -1:
            raise UnsupportedOperation(f"{where}: only flatten(x, 1) is supported")
        return Op("flatten")
    if fn in _DROPOUT_FNS:
        return _SKIP
    if fn in _SOFTMAX_FNS:
        return _softmax_dim(_bind(_sig_softmax, node)["dim"], where)
    raise UnsupportedOperation(f"{where} is not supported in cipherspace{_hint(fn)}")


class _Walker:
    """One pass over the fx graph, keeping the chain's current tensor node."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.current: fx.Node | None = None
        self.helpers: dict[fx.Node, tuple[str, int]] = {}  # shape/size nodes
        self.ops: list[_Raw] = []

    def run(self) -> list[_Raw]:
        for node in self.gm.graph.nodes:
            self.visit(node)
        return self.ops

    def _tensor_input(self, node: fx.Node, extra: tuple[Any, ...] = ()) -> None:
        args = list(node.args) + list(node.kwargs.values())
        if not args or args[0] is not self.current:
            raise UnsupportedOperation(
                f"node {node.name!r} ({node.target}) does not take the previous operation's"
                " output: branches and skip connections are not supported")
        used: list[fx.Node] = []
        fx.node.map_arg(tuple(args[1:]), used.append)
        for a in used:
            if a not in extra:
                raise UnsupportedOperation(
                    f"node {node.name!r} ({node.target}) combines two tensors: not supported")

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if self.current is not None:
                raise UnsupportedOperation(f"a second input {node.name!r}: one input only")
            self.current = node
        elif node.op == "output":
            if node.args[0] is not self.current:
                raise UnsupportedOperation("the output must be the chain's last tensor")
        elif node.op == "get_attr":
            raise UnsupportedOperation(
                f"get_attr {node.target!r}: parameters used outside a supported module")
        elif self._helper(node):
            return
        elif node.op == "call_method" and node.target in ("view", "reshape"):
            self._reshape(node)
        else:
            self._tensor_input(node)
            if node.op == "call_module":
                op = _module_op(self.gm.get_submodule(str(node.target)), str(node.target))
            elif node.op == "call_method":
                op = self._method_op(node)
            else:
                op = _function_op(node)
            if op is not _SKIP:
                self.ops.append(op)  # type: ignore[arg-type]
            self.current = node

    def _helper(self, node: fx.Node) -> bool:
        """``x.size()``, ``x.size(0)``, ``x.shape``, ``[...][k]`` on the current tensor."""
        a = node.args
        if node.op == "call_method" and node.target == "size" and a and a[0] is self.current:
            self.helpers[node] = ("dim", int(a[1])) if len(a) > 1 else ("shape", -1)  # type: ignore[arg-type]
        elif (node.op == "call_function" and node.target is getattr and a[0] is self.current
              and a[1] == "shape"):
            self.helpers[node] = ("shape", -1)
        elif (node.op == "call_function" and node.target is operator.getitem
              and a[0] in self.helpers and self.helpers[a[0]][0] == "shape"  # type: ignore[index]
              and isinstance(a[1], int)):
            self.helpers[node] = ("dim", a[1])
        else:
            return False
        return True

    def _reshape(self, node: fx.Node) -> None:
        dims: list[Any] = list(node.args[1:])
        if len(dims) == 1 and isinstance(dims[0], tuple | list):
            dims = list(dims[0])
        batch_ok = len(dims) == 2 and (dims[0] == -1 or self.helpers.get(dims[0]) == ("dim", 0))
        if not batch_ok or not (dims[1] == -1 or (isinstance(dims[1], int) and dims[1] > 0)):
            raise UnsupportedOperation(
                f"{node.target} {tuple(dims)} (node {node.name!r}): only (N, -1)/(-1, n) forms")
        if dims[0] == -1 and dims[1] == -1:
            raise UnsupportedOperation(f"{node.target}(-1, -1) (node {node.name!r})")
        self._tensor_input(node, tuple(d for d in dims if isinstance(d, fx.Node)))
        self.ops.append(Op("flatten", size=dims[1] if dims[1] > 0 else 0))
        self.current = node

    @staticmethod
    def _method_op(node: fx.Node) -> _Raw | object:
        name, where = str(node.target), f"method .{node.target}() (node {node.name!r})"
        if name in ("relu", "relu_"):
            return Op("relu")
        if name == "contiguous":
            return _SKIP
        if name == "flatten":
            a = _bind(_sig_flatten, node)
            if a["start_dim"] != 1 or a["end_dim"] != -1:
                raise UnsupportedOperation(f"{where}: only x.flatten(1) is supported")
            return Op("flatten")
        if name in ("softmax", "log_softmax"):
            return _softmax_dim(_bind(_sig_softmax, node)["dim"], where)
        raise UnsupportedOperation(f"{where} is not supported in cipherspace{_hint(name)}")


def _resolve(raw: list[_Raw], input_shape: Shape, shapes: Mapping[str, Shape]) -> Structure:
    """Fix adaptive pools to windows for ``input_shape`` and check the shapes chain."""
    ops: list[Op] = []
    cur = input_shape
    for r in raw:
        if isinstance(r, tuple):
            kind, (oh, ow) = r
            if len(cur) != 3 or cur[1] % oh or cur[2] % ow:
                raise UnsupportedOperation(
                    f"adaptive {kind} to {(oh, ow)} on input {cur}: sizes must divide evenly")
            k = (cur[1] // oh, cur[2] // ow)
            r = Op(kind, kernel=k, stride=k)
        cur = step(r, cur, shapes)
        ops.append(r)
    return Structure(input_shape, tuple(ops))


def _state_shapes(model: nn.Module) -> dict[str, Shape]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def infer_input_shape(raw: list[_Raw], shapes: Mapping[str, Shape]) -> Shape:
    """``(in_features,)`` for a Linear-first model; for a Conv2d-first one, the smallest square
    ``(C, s, s)`` (s up to 512) for which the shapes chain (floor division in strided windows
    lets several sizes fit: 32 and 33 for the template CNN; pass ``input_shape`` for another)."""
    first = next(r for r in raw if isinstance(r, Op) and r.kind in LINEAR_KINDS)
    w = shapes[f"{first.name}.weight"]
    if first.kind == "linear":
        return (int(w[1]),)
    for s in range(1, 513):
        try:
            if len(_out(_resolve(raw, (int(w[1]), s, s), shapes), shapes)) == 1:
                return (int(w[1]), s, s)
        except (CipherFormatError, UnsupportedOperation):
            continue
    raise IVHEError(f"no square input up to 512 fits the layers after {first.name!r}: "
                    "pass input_shape")


def _out(st: Structure, shapes: Mapping[str, Shape]) -> Shape:
    cur = st.input_shape
    for op in st.ops:
        cur = step(op, cur, shapes)
    return cur


def _chain(model: nn.Module) -> list[_Raw]:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; the refusal names it
        raise UnsupportedOperation(f"torch.fx cannot trace {type(model).__name__}: {exc}") from None
    raw = _Walker(gm).run()
    idx = [i for i, r in enumerate(raw) if isinstance(r, Op) and r.kind in LINEAR_KINDS]
    if not idx:
        raise UnsupportedOperation("the model has no Conv2d or Linear layer to encrypt")
    if any(not (isinstance(r, Op) and r.kind == "flatten") for r in raw[: idx[0]]):
        raise UnsupportedOperation("only a flatten may come before the first Conv2d/Linear")
    return raw


def trace_structure(model: nn.Module, input_shape: Shape | None = None) -> Structure:
    """The model's cipherspace structure (raises ``UnsupportedOperation`` naming the first
    operation that cannot be evaluated; ``IVHEError`` when the input size cannot be inferred).

    Args:
        model: any module whose forward is a chain of the supported operations.
        input_shape: per-sample input shape, ``(F,)`` or ``(C, H, W)``; inferred when omitted
            (see ``infer_input_shape``).
    """
    raw = _chain(model)
    shapes = _state_shapes(model)
    shape = tuple(input_shape) if input_shape is not None else infer_input_shape(raw, shapes)
    try:
        st = _resolve(raw, shape, shapes)
        if len(_out(st, shapes)) != 1:
            raise CipherFormatError("the output must be (N, classes)")
    except CipherFormatError as exc:
        raise UnsupportedOperation(f"shapes do not chain for input {shape}: {exc}") from None
    if [op.name for op in st.ops].count(st.first.name) > 1:
        raise UnsupportedOperation(f"the first layer {st.first.name!r} is applied twice")
    return st


def first_layer_of(model: nn.Module) -> nn.Conv2d | nn.Linear:
    """The first Conv2d/Linear in forward (trace) order."""
    first = next(r for r in _chain(model) if isinstance(r, Op) and r.kind in LINEAR_KINDS)
    mod = model.get_submodule(first.name)
    assert isinstance(mod, nn.Conv2d | nn.Linear)
    return mod
