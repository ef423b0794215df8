"""JSON as PM2 reads it: a JavaScript object literal.

Accepts what people write in ecosystem.json files: // and /* */ comments,
unquoted keys, single-quoted strings, trailing commas, and `module.exports =`
in front. Errors carry the line and column.
"""

from __future__ import annotations

from typing import Any

_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t", "0": "\0", "v": "\v"}
_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
_IDENT = _IDENT_START | set("0123456789")
_WORDS = {"true": True, "false": False, "null": None, "undefined": None,
          "Infinity": float("inf"), "NaN": float("nan")}


class JsonishError(ValueError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.reason = message


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> JsonishError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return JsonishError(message, line, column)

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("comment is never closed (missing */)")
                self.pos = end + 2
            else:
                return

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self) -> Any:
        ch = self.peek()
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.array()
        if ch in "\"'":
            return self.string()
        if ch == "-" or ch == "+" or ch == "." or ch.isdigit():
            return self.number()
        if ch in _IDENT_START:
            start = self.pos
            word = self.ident()
            if word in _WORDS:
                return _WORDS[word]
            raise self.error(f"unexpected word {word!r} (strings need quotes)", start)
        if not ch:
            raise self.error("the file ends where a value was expected")
        raise self.error(f"unexpected character {ch!r}")

    def ident(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _IDENT:
            self.pos += 1
        return self.text[start:self.pos]

    def string(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        out: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.error("string is never closed", start)
            ch = text[self.pos]
            if ch == quote:
                self.pos += 1
                return "".join(out)
            if ch == "\n":
                raise self.error("string is never closed on its line", start)
            if ch == "\\":
                nxt = text[self.pos + 1:self.pos + 2]
                if nxt == "u":
                    digits = text[self.pos + 2:self.pos + 6]
                    try:
                        out.append(chr(int(digits, 16)))
                    except ValueError:
                        raise self.error(f"bad escape \\u{digits}") from None
                    self.pos += 6
                    continue
                if nxt == "\n":
                    self.pos += 2
                    continue
                out.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1

    def number(self) -> int | float:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] in "+-0123456789.eExXabcdefABCDEF_":
            self.pos += 1
        raw = text[start:self.pos].replace("_", "")
        try:
            if raw.lower().lstrip("+-").startswith("0x"):
                return int(raw, 16)
            if any(c in raw for c in ".eE") and not raw.lower().lstrip("+-").startswith("0x"):
                return float(raw)
            return int(raw)
        except ValueError:
            raise self.error(f"bad number {raw!r}", start) from None

    def obj(self) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        while True:
            ch = self.peek()
            if ch == "}":
                self.pos += 1
                return out
            if ch in "\"'":
                key = self.string()
            elif ch in _IDENT_START or ch.isdigit():
                key = self.ident() if ch in _IDENT_START else str(self.number())
            elif not ch:
                raise self.error("the file ends inside an object (missing })")
            else:
                raise self.error(f"expected a key or }}, found {ch!r}")
            if self.peek() != ":":
                raise self.error(f"expected : after the key {key!r}")
            self.pos += 1
            out[key] = self.value()
            ch = self.peek()
            if ch == ",":
                self.pos += 1
            elif ch != "}":
                raise self.error(f"expected , or }} after the value of {key!r}"
                                 + (f", found {ch!r}" if ch else ""))

    def array(self) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        while True:
            ch = self.peek()
            if ch == "]":
                self.pos += 1
                return out
            if not ch:
                raise self.error("the file ends inside a list (missing ])")
            out.append(self.value())
            ch = self.peek()
            if ch == ",":
                self.pos += 1
            elif ch != "]":
                raise self.error("expected , or ] in a list" + (f", found {ch!r}" if ch else ""))


def loads(text: str) -> Any:
    parser = _Parser(text)
    parser.skip()
    for prefix in ("module.exports", "export default"):
        if text.startswith(prefix, parser.pos):
            parser.pos += len(prefix)
            if prefix == "module.exports":
                if parser.peek() != "=":
                    raise parser.error("expected = after module.exports")
                parser.pos += 1
            break
    result = parser.value()
    if parser.peek() == ";":
        parser.pos += 1
    if parser.peek():
        raise parser.error("unexpected text after the end of the value")
    return result
