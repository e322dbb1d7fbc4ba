"""Arithmetic for derived features (BMI from weight and height, eGFR from creatinine, age and sex).

A spec writes the formula as a Python-like expression over other features' values; it is parsed once at load time
into a restricted AST — numbers, feature names, + − × ÷ **, comparisons, `a if cond else b`, and min, max, ln, log10,
exp, sqrt, abs — so a spec file can never run arbitrary code.
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache
from collections.abc import Callable, Mapping

_FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "ln": math.log, "log10": math.log10, "exp": math.exp, "sqrt": math.sqrt, "abs": abs,
}
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}
_CMPOPS = {ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b,
           ast.GtE: lambda a, b: a >= b, ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b}


class ExpressionError(ValueError):
    """The expression uses something outside the allowed arithmetic, or cannot be evaluated."""


class Expression:
    def __init__(self, source: str) -> None:
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"cannot parse '{source}': {exc.msg}") from exc
        self.source = source
        self.names: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"'{self.source}': only numbers are allowed as constants")
        elif isinstance(node, ast.Name):
            self.names.add(node.id)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._check(node.operand)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
            self._check(node.left)
            self._check(node.comparators[0])
        elif isinstance(node, ast.IfExp):
            for part in (node.test, node.body, node.orelse):
                self._check(part)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
              and not node.keywords):
            for arg in node.args:
                self._check(arg)
        else:
            raise ExpressionError(f"'{self.source}': {type(node).__name__} is not allowed in a derived feature")

    def evaluate(self, values: Mapping[str, float]) -> float:
        try:
            result = self._eval(self._tree, values)
        except (ArithmeticError, ValueError, TypeError) as exc:  # TypeError: a complex value met a comparison
            raise ExpressionError(f"cannot compute '{self.source}': {exc}") from exc
        if isinstance(result, complex):  # a negative number to a fractional power (a negative creatinine)
            raise ExpressionError(f"'{self.source}' has no real value for these inputs")
        if isinstance(result, bool):
            return 1.0 if result else 0.0
        value = float(result)
        if not math.isfinite(value):
            raise ExpressionError(f"'{self.source}' gave {value}")
        return value

    def decided_without(self, values: Mapping[str, float],
                        bounds: Mapping[str, tuple[str, float]] | None = None) -> float | None:
        """The value when some names have no value but none of them can change it, else None. Only a product with a
        known zero factor decides past an unknown (`x * (1 - diabetes)` is 0 for a diabetic patient whatever x is,
        x finite as every feature value is); a conditional whose test is unknown decides when both branches agree;
        a comparison of a name known only as a bound ('<4 %': `bounds[name] = ('<', 4.0)`) with a number decides
        when every value the bound allows gives the same answer (`hba1c >= 6.5` is false for '<4 %')."""
        try:
            result = self._partial(self._tree, values, bounds or {})
        except (ArithmeticError, ValueError, TypeError):
            return None
        if result is None or isinstance(result, complex):
            return None
        value = float(result)
        return value if math.isfinite(value) else None

    def _partial(self, node: ast.AST, values: Mapping[str, float],
                 bounds: Mapping[str, tuple[str, float]]) -> float | bool | None:
        if isinstance(node, ast.Name):
            return values.get(node.id)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            left, right = self._partial(node.left, values, bounds), self._partial(node.right, values, bounds)
            if isinstance(node.op, ast.Mult) and (left == 0 and left is not None or right == 0 and right is not None):
                return 0.0
            return None if left is None or right is None else _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.IfExp):
            test = self._partial(node.test, values, bounds)
            if test is not None:
                return self._partial(node.body if test else node.orelse, values, bounds)
            body, orelse = self._partial(node.body, values, bounds), self._partial(node.orelse, values, bounds)
            return body if body is not None and body == orelse else None
        if isinstance(node, ast.UnaryOp):
            operand = self._partial(node.operand, values, bounds)
            return None if operand is None else (-operand if isinstance(node.op, ast.USub) else +operand)
        if isinstance(node, ast.Compare):
            left, right = self._partial(node.left, values, bounds), self._partial(node.comparators[0], values, bounds)
            if left is None and right is not None and isinstance(node.left, ast.Name) and node.left.id in bounds:
                return _bound_decides(*bounds[node.left.id], type(node.ops[0]), float(right))
            return None if left is None or right is None else _CMPOPS[type(node.ops[0])](left, right)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        args = [self._partial(a, values, bounds) for a in node.args]
        return None if any(a is None for a in args) else _FUNCTIONS[node.func.id](*args)

    def _eval(self, node: ast.AST, values: Mapping[str, float]) -> float | bool:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, values), self._eval(node.right, values))
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, values)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.Compare):
            return _CMPOPS[type(node.ops[0])](self._eval(node.left, values), self._eval(node.comparators[0], values))
        if isinstance(node, ast.IfExp):
            return self._eval(node.body if self._eval(node.test, values) else node.orelse, values)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(self._eval(a, values) for a in node.args))


def _bound_decides(comparator: str, limit: float, op: type, number: float) -> bool | None:
    """`value <op> number` for every value a bound allows ('<4' is every value below 4): True, False, or None when
    it depends on the value. Bounds are half-lines, so only an order comparison can be decided."""
    closed = comparator in ("<=", ">=")
    if comparator in ("<", "<="):  # values from -inf up to the limit
        if op in (ast.Lt, ast.LtE):
            return True if (limit < number or (limit == number and (op is ast.LtE or not closed))) else None
        if op in (ast.Gt, ast.GtE):
            return False if (limit < number or (limit == number and (op is ast.Gt or not closed))) else None
    elif comparator in (">", ">="):  # values from the limit up to +inf
        if op in (ast.Gt, ast.GtE):
            return True if (limit > number or (limit == number and (op is ast.GtE or not closed))) else None
        if op in (ast.Lt, ast.LtE):
            return False if (limit > number or (limit == number and (op is ast.Lt or not closed))) else None
    return None


@lru_cache(maxsize=512)
def compiled_expression(source: str) -> Expression:
    """An Expression parsed once per distinct source text (specs are loaded once; expressions run per request)."""
    return Expression(source)
