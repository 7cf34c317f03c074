"""CQL2 filters (text and JSON), parsed by pygeofilter and translated into parameterized SQL.

Supported: comparisons (= <> < <= > >=), AND/OR/NOT, LIKE, IN, BETWEEN, IS NULL on the
collection's scalar queryables, and the spatial predicates S_INTERSECTS, S_WITHIN, S_CONTAINS,
S_DISJOINT on `geometry` with a CRS84 geometry or BBOX literal. Values are always literals bound
by psycopg.sql; property names only ever come from the collection's own definitions.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, cast

import lark
import shapely.geometry
from psycopg import sql
from pygeofilter import ast, values
from pygeofilter.parsers.cql2_json import parse as parse_json
from pygeofilter.parsers.cql2_text import parser as cql2_text

from geo_service.errors import ClientError
from geo_service.query.collections import Collection

COMPARISONS = {ast.Equal: sql.SQL("="), ast.NotEqual: sql.SQL("<>"), ast.LessThan: sql.SQL("<"),
               ast.LessEqual: sql.SQL("<="), ast.GreaterThan: sql.SQL(">"),
               ast.GreaterEqual: sql.SQL(">=")}
SPATIAL = {ast.GeometryIntersects: sql.SQL("ST_Intersects"), ast.GeometryWithin: sql.SQL("ST_Within"),
           ast.GeometryContains: sql.SQL("ST_Contains"), ast.GeometryDisjoint: sql.SQL("ST_Disjoint")}
LIKE = {(False, False): sql.SQL("LIKE"), (False, True): sql.SQL("ILIKE"),  # (not, nocase)
        (True, False): sql.SQL("NOT LIKE"), (True, True): sql.SQL("NOT ILIKE")}
# pygeofilter 0.4.0's cql2-text grammar gives AND and OR one precedence, left to right, so
# `a OR b AND c` meant `(a OR b) AND c`: other rows than the researcher asked for, silently. CQL2
# (like SQL) binds AND tighter. The same grammar with the two rules split, and pygeofilter's own
# transformer; if a new pygeofilter changes the rule, this fails at import, not in a query.
_GRAMMAR = Path(cql2_text.__file__).with_name("grammar.lark")
_ONE_LEVEL = """?condition: condition_1
          | condition "AND"i condition_1                                 -> and_
          | condition "OR"i condition_1                                   -> or_
"""
_TWO_LEVELS = """?condition: condition_and
          | condition "OR"i condition_and                                 -> or_

?condition_and: condition_1
              | condition_and "AND"i condition_1                         -> and_
"""


def _mended_grammar() -> str:
    grammar = _GRAMMAR.read_text(encoding="utf-8")
    if _ONE_LEVEL not in grammar:
        raise RuntimeError(f"{_GRAMMAR}: the AND/OR rule is not the one geo_service mends")
    return grammar.replace(_ONE_LEVEL, _TWO_LEVELS)


_MENDED_GRAMMAR = _mended_grammar()  # checked at import


@functools.cache  # built at the first text filter (0.1 s), not at every start of the CLI or app
def _text_parser() -> lark.Lark:
    return lark.Lark(_MENDED_GRAMMAR, parser="lalr", maybe_placeholders=False,
                     transformer=cql2_text.CQLTransformer(),
                     import_paths=[str(_GRAMMAR.parent.parent)], source_path=str(_GRAMMAR))


def parse_text(text: str) -> ast.Node:
    """CQL2 text as pygeofilter's AST, AND binding tighter than OR."""
    return cast(ast.Node, _text_parser().parse(text))


SCALAR_TYPES = ("string", "integer", "number")
MAX_FILTER_DEPTH = 100  # levels: an AND or OR chain of n terms is n levels deep
MAX_FILTER_NODES = 1000  # conditions, properties and values together


def parse(text: str, lang: str | None) -> ast.Node:
    """A CQL2 text or JSON expression as a pygeofilter AST; ClientError when it does not parse."""
    lang = lang or ("cql2-json" if text.lstrip().startswith("{") else "cql2-text")
    if lang not in ("cql2-text", "cql2-json"):
        raise ClientError("filter-lang must be cql2-text or cql2-json")
    try:
        node = (parse_json(_bbox_as_polygon(json.loads(text))) if lang == "cql2-json"
                else parse_text(text))
    except RecursionError:
        raise ClientError(f"filter is nested too deeply (at most {MAX_FILTER_DEPTH} levels)"
                          ) from None
    except Exception as exc:  # the parsers raise many kinds of errors; all are the client's
        raise ClientError(f"filter does not parse as {lang}: {exc}".splitlines()[0]) from None
    _check_size(node)
    return node


def _check_size(node: Any) -> None:
    """Refuse filters past MAX_FILTER_DEPTH levels or MAX_FILTER_NODES parts: translating them
    (recursively) and planning them would cost far more than any real question needs."""
    count = 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if depth > MAX_FILTER_DEPTH:
            raise ClientError(f"filter is nested too deeply (at most {MAX_FILTER_DEPTH} levels)")
        if count > MAX_FILTER_NODES:
            raise ClientError(f"filter is too long (at most {MAX_FILTER_NODES} conditions and "
                              "values); split the question or use a region")
        children = item if isinstance(item, list) else (
            item.get_sub_nodes() if isinstance(item, ast.Node) else [])
        stack.extend((child, depth + 1) for child in children)


def _bbox_as_polygon(node: Any) -> Any:
    """CQL2-JSON `{"bbox": [west, south, east, north]}` as a GeoJSON polygon: pygeofilter 0.4.0
    reads a JSON bbox's numbers in the wrong order (its issue 163), the text BBOX() rightly."""
    if isinstance(node, list):
        return [_bbox_as_polygon(item) for item in node]
    if not isinstance(node, dict):
        return node
    numbers = node.get("bbox")
    if set(node) == {"bbox"} and isinstance(numbers, list) and len(numbers) in (4, 6) and all(
            isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        west, south, east, north = numbers if len(numbers) == 4 else [numbers[i] for i in (0, 1, 3, 4)]
        return shapely.geometry.mapping(shapely.geometry.box(west, south, east, north))
    return {key: _bbox_as_polygon(value) for key, value in node.items()}


class _Translator:
    def __init__(self, collection: Collection) -> None:
        self.collection = collection

    def property(self, node: Any) -> sql.Composable:
        if not isinstance(node, ast.Attribute):
            raise ClientError("the left side of a comparison must be a property")
        name = node.name
        if name not in self.collection.properties:
            raise ClientError(f"unknown property {name!r} in filter; see queryables")
        if self.collection.types.get(name, "string") not in SCALAR_TYPES:
            raise ClientError(f"property {name!r} is a list: not usable in this comparison")
        return self.collection.properties[name]

    def value(self, node: Any, name: str) -> sql.Composable:
        kind = self.collection.types.get(name, "string")
        if isinstance(node, bool) or not isinstance(node, str | int | float):
            raise ClientError(f"{name!r} must be compared with a plain value, not {node!r}")
        if kind == "string":
            return sql.Literal(str(node))
        if isinstance(node, str):
            raise ClientError(f"{name!r} is a number: compare it with a number")
        return sql.Literal(node)

    def geometry(self, node: Any) -> sql.Composable:
        if isinstance(node, values.Geometry):
            shape = shapely.geometry.shape(node.geometry)
        elif isinstance(node, values.Envelope):
            shape = shapely.geometry.box(node.x1, node.y1, node.x2, node.y2)
        elif isinstance(node, ast.Function) and node.name.lower() == "bbox" and \
                len(node.arguments) in (4, 6) and all(isinstance(a, int | float)
                                                       for a in node.arguments):
            numbers = node.arguments if len(node.arguments) == 4 else \
                [node.arguments[i] for i in (0, 1, 3, 4)]
            shape = shapely.geometry.box(*numbers)
        else:
            raise ClientError("spatial predicates take a geometry literal (WKT or GeoJSON) or BBOX")
        if not shape.is_valid or shape.is_empty:
            raise ClientError("the filter's geometry is empty or invalid")
        return sql.SQL("ST_GeomFromText({}, 4326)").format(sql.Literal(shape.wkt))

    def __call__(self, node: Any) -> sql.Composable:
        if isinstance(node, ast.And | ast.Or):
            word = "AND" if isinstance(node, ast.And) else "OR"
            return sql.SQL("({} {} {})").format(self(node.lhs), sql.SQL(word), self(node.rhs))
        if isinstance(node, ast.Not):
            return sql.SQL("(NOT {})").format(self(node.sub_node))
        if type(node) in COMPARISONS:
            name = getattr(node.lhs, "name", "")
            return sql.SQL("({} {} {})").format(self.property(node.lhs),
                                                COMPARISONS[type(node)],
                                                self.value(node.rhs, name))
        if isinstance(node, ast.Like):
            pattern = node.pattern  # CQL2 and SQL share % and _ as wildcards and \ as escape
            return sql.SQL("({}::text {} {})").format(
                self.property(node.lhs), LIKE[bool(node.not_), bool(node.nocase)],
                sql.Literal(pattern))
        if isinstance(node, ast.In):
            name = getattr(node.lhs, "name", "")
            options = sql.SQL(", ").join(self.value(v, name) for v in node.sub_nodes)
            return sql.SQL("({} {} ({}))").format(self.property(node.lhs),
                                                  sql.SQL("NOT IN" if node.not_ else "IN"), options)
        if isinstance(node, ast.Between):
            name = getattr(node.lhs, "name", "")
            return sql.SQL("({} {} {} AND {})").format(
                self.property(node.lhs), sql.SQL("NOT BETWEEN" if node.not_ else "BETWEEN"),
                self.value(node.low, name), self.value(node.high, name))
        if isinstance(node, ast.IsNull):
            return sql.SQL("({} IS {}NULL)").format(self.property(node.lhs),
                                                    sql.SQL("NOT " if node.not_ else ""))
        if type(node) in SPATIAL:
            if not (isinstance(node.lhs, ast.Attribute) and node.lhs.name == "geometry"):
                raise ClientError("spatial predicates apply to the property 'geometry'")
            if self.collection.spatial is None:
                raise ClientError(f"collection {self.collection.id} has no geometry to filter on")
            geometry = self.geometry(node.rhs)
            test = sql.SQL("{}({}, {})").format(SPATIAL[type(node)], self.collection.spatial,
                                                geometry)
            if isinstance(node, ast.GeometryDisjoint):
                return test
            # the other three need the boxes to meet: candidates by the indexed box first
            return sql.SQL("({} && {} AND {})").format(self.collection.box_sql, geometry, test)
        if isinstance(node, bool):
            return sql.SQL("TRUE" if node else "FALSE")
        raise ClientError(f"filter uses {type(node).__name__}, which this service does not support")


def to_sql(node: ast.Node, collection: Collection) -> sql.Composable:
    """The WHERE condition of a parsed filter."""
    return _Translator(collection)(node)
