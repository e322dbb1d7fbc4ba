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


@lru_cache(maxsize=512)
def compiled_expression(source: str) -> Expression:
    """An Expression parsed once per distinct source text (specs are loaded once; expressions run per request)."""
    return Expression(source)
