// The Python subset TorchScript serializes its code in (torch/csrc/jit/serialization/python_print.cpp): classes
// with attribute declarations and methods, free functions, and in method bodies assignments, return, if/elif/else,
// for and while loops, expressions with calls, attributes, subscripts, tuples, lists and literals. A hand-written
// tokenizer (with Python's indentation rule) and a recursive-descent parser build the AST below.
import { KilnError } from '../../../runtime/errors.js';

export type Expr =
  | { k: 'name'; id: string }
  | { k: 'num'; value: number; float: boolean }
  | { k: 'str'; value: string }
  | { k: 'const'; value: boolean | null }
  | { k: 'attr'; obj: Expr; name: string }
  | { k: 'call'; fn: Expr; args: Expr[]; kwargs: [string, Expr][] }
  | { k: 'index'; obj: Expr; index: Expr }
  | { k: 'slice'; lo?: Expr; hi?: Expr; step?: Expr }
  | { k: 'tuple'; items: Expr[] }
  | { k: 'list'; items: Expr[] }
  | { k: 'dict'; items: [Expr, Expr][] }
  | { k: 'unary'; op: string; x: Expr }
  | { k: 'binary'; op: string; a: Expr; b: Expr }
  | { k: 'ifexp'; cond: Expr; a: Expr; b: Expr };

export type Stmt = { line: number } & (
  | { k: 'assign'; targets: Expr; value: Expr }
  | { k: 'expr'; value: Expr }
  | { k: 'return'; value?: Expr }
  | { k: 'if'; cond: Expr; then: Stmt[]; else: Stmt[] }
  | { k: 'for'; target: Expr; iter: Expr; body: Stmt[] }
  | { k: 'while'; cond: Expr; body: Stmt[] }
  | { k: 'pass' }
);

export interface Param {
  name: string;
  type?: Expr;
  dflt?: Expr;
}

export interface FuncDef {
  name: string;
  /** The qualified name, e.g. '__torch__.torch.nn.modules.conv.Conv2d.forward'. */
  qualName: string;
  params: Param[];
  body: Stmt[];
  file: string;
}

export interface ClassDef {
  name: string;
  qualName: string;
  /** Attribute declarations (`weight : Tensor`) and class-level assignments (`__parameters__ = [...]`). */
  attrs: Map<string, { type?: Expr; value?: Expr }>;
  methods: Map<string, FuncDef>;
}

export interface CodeFile {
  classes: Map<string, ClassDef>;
  functions: Map<string, FuncDef>;
}

type Tok = { t: 'name' | 'num' | 'str' | 'op' | 'nl' | 'indent' | 'dedent' | 'eof'; v: string; line: number };

function syntaxError(file: string, line: number, what: string): never {
  throw new KilnError('E_MODEL_DECODE', `${file}:${line}: ${what} in the TorchScript code`, {
    hint: 'the archive is corrupt or was altered, or written by a TorchScript version Kiln does not read; save it again with torch.jit.save',
  });
}

const OPS = [
  '**=',
  '//=',
  '>>=',
  '<<=',
  '->',
  '**',
  '//',
  '==',
  '!=',
  '<=',
  '>=',
  '<<',
  '>>',
  '+=',
  '-=',
  '*=',
  '/=',
  '(',
  ')',
  '[',
  ']',
  '{',
  '}',
  ',',
  ':',
  '.',
  ';',
  '@',
  '=',
  '+',
  '-',
  '*',
  '/',
  '%',
  '<',
  '>',
  '&',
  '|',
  '^',
  '~',
];

function tokenize(src: string, file: string): Tok[] {
  const toks: Tok[] = [];
  const indents = [0];
  let depth = 0;
  let line = 1;
  let i = 0;
  let atLineStart = true;
  while (i < src.length) {
    if (atLineStart && depth === 0) {
      let col = 0;
      while (src[i] === ' ' || src[i] === '\t') {
        col += src[i] === '\t' ? 8 - (col % 8) : 1;
        i++;
      }
      if (src[i] === '\n' || src[i] === '#' || src[i] === '\r' || i >= src.length) {
        // a blank or comment-only line
        while (i < src.length && src[i] !== '\n') i++;
        if (src[i] === '\n') {
          i++;
          line++;
        }
        continue;
      }
      atLineStart = false;
      if (col > indents[indents.length - 1]) {
        indents.push(col);
        toks.push({ t: 'indent', v: '', line });
      } else {
        while (col < indents[indents.length - 1]) {
          indents.pop();
          toks.push({ t: 'dedent', v: '', line });
        }
        if (col !== indents[indents.length - 1]) syntaxError(file, line, 'an inconsistent indentation');
      }
    }
    const c = src[i];
    if (c === '\n') {
      if (depth === 0) {
        toks.push({ t: 'nl', v: '', line });
        atLineStart = true;
      }
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') i++;
    else if (c === '\\' && src[i + 1] === '\n') {
      i += 2;
      line++;
    } else if (c === '#') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_]\w*/.exec(src.slice(i, i + 200))!;
      toks.push({ t: 'name', v: m[0], line });
      i += m[0].length;
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      const m = /^(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[jJ]?)/.exec(src.slice(i, i + 100))!;
      toks.push({ t: 'num', v: m[0], line });
      i += m[0].length;
    } else if (c === '"' || c === "'") {
      let s = '';
      let j = i + 1;
      for (;;) {
        if (j >= src.length || src[j] === '\n') syntaxError(file, line, 'an unterminated string');
        const ch = src[j];
        if (ch === c) break;
        if (ch === '\\') {
          const e = src[j + 1];
          const esc: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0' };
          if (e === 'x') {
            s += String.fromCharCode(Number.parseInt(src.slice(j + 2, j + 4), 16));
            j += 4;
            continue;
          }
          s += esc[e] ?? `\\${e}`;
          j += 2;
          continue;
        }
        s += ch;
        j++;
      }
      toks.push({ t: 'str', v: s, line });
      i = j + 1;
    } else {
      const op = OPS.find((o) => src.startsWith(o, i));
      if (!op) syntaxError(file, line, `an unexpected character '${c}'`);
      if ('([{'.includes(op)) depth++;
      if (')]}'.includes(op)) depth = Math.max(0, depth - 1);
      toks.push({ t: 'op', v: op, line });
      i += op.length;
    }
  }
  if (!atLineStart) toks.push({ t: 'nl', v: '', line });
  while (indents.length > 1) {
    indents.pop();
    toks.push({ t: 'dedent', v: '', line });
  }
  toks.push({ t: 'eof', v: '', line });
  return toks;
}

const COMPARE = new Set(['==', '!=', '<', '<=', '>', '>=']);

class Parser {
  private p = 0;
  constructor(
    private readonly toks: Tok[],
    private readonly file: string,
  ) {}

  private get tok(): Tok {
    return this.toks[this.p];
  }
  private fail(what: string): never {
    const t = this.tok;
    const got = t.t === 'eof' ? 'the end of the file' : t.t === 'nl' ? 'the end of the line' : `'${t.v || t.t}'`;
    return syntaxError(this.file, t.line, `${what}, found ${got}`);
  }
  private is(v: string, t: Tok['t'] = 'op'): boolean {
    return this.tok.t === t && (t !== 'op' && t !== 'name' ? true : this.tok.v === v);
  }
  private accept(v: string, t: Tok['t'] = 'op'): boolean {
    if (!this.is(v, t)) return false;
    this.p++;
    return true;
  }
  private expect(v: string, t: Tok['t'] = 'op'): void {
    if (!this.accept(v, t)) this.fail(`expected '${v || t}'`);
  }
  private name(): string {
    if (this.tok.t !== 'name') this.fail('expected a name');
    return this.toks[this.p++].v;
  }

  /** A code file: classes, functions; imports and top-level assignments (op_version_set) are skipped. */
  codeFile(prefix: string): CodeFile {
    const out: CodeFile = { classes: new Map(), functions: new Map() };
    while (!this.is('', 'eof')) {
      if (this.accept('nl', 'nl')) continue;
      if (this.is('class', 'name')) {
        const c = this.classDef(prefix);
        out.classes.set(c.name, c);
      } else if (this.is('def', 'name')) {
        const f = this.funcDef(prefix);
        out.functions.set(f.name, f);
      } else {
        // import lines and `op_version_set = N`
        while (!this.is('', 'nl') && !this.is('', 'eof')) this.p++;
      }
    }
    return out;
  }

  private classDef(prefix: string): ClassDef {
    this.expect('class', 'name');
    const name = this.name();
    if (this.accept('(')) {
      while (!this.accept(')')) {
        this.expr();
        this.accept(',');
      }
    }
    this.expect(':');
    const qualName = `${prefix}.${name}`;
    const c: ClassDef = { name, qualName, attrs: new Map(), methods: new Map() };
    this.expect('', 'nl');
    this.expect('', 'indent');
    while (!this.accept('', 'dedent')) {
      if (this.accept('', 'nl')) continue;
      if (this.is('def', 'name')) {
        const f = this.funcDef(qualName);
        c.methods.set(f.name, f);
        continue;
      }
      const target = this.postfix();
      const type = this.accept(':') ? this.expr() : undefined;
      const value = this.accept('=') ? this.exprList() : undefined;
      if (target.k === 'name') c.attrs.set(target.id, { type, value });
      else if (target.k === 'index' && target.index.k === 'str') {
        // __annotations__["0"] = <type>: an attribute whose name is not an identifier (a ModuleList's items)
        c.attrs.set(target.index.value, { type: value });
      } else this.fail('expected an attribute declaration');
      this.expect('', 'nl');
    }
    return c;
  }

  private funcDef(prefix: string): FuncDef {
    this.expect('def', 'name');
    const name = this.name();
    this.expect('(');
    const params: Param[] = [];
    while (!this.accept(')')) {
      if (this.accept('*')) {
        // keyword-only marker
        this.accept(',');
        continue;
      }
      const p: Param = { name: this.name() };
      if (this.accept(':')) p.type = this.expr();
      if (this.accept('=')) p.dflt = this.expr();
      params.push(p);
      if (!this.accept(',') && !this.is(')')) this.fail("expected ',' or ')' in the parameters");
    }
    if (this.accept('->')) this.expr();
    this.expect(':');
    return { name, qualName: `${prefix}.${name}`, params, body: this.block(), file: this.file };
  }

  private block(): Stmt[] {
    if (!this.is('', 'nl')) return [this.simpleStmt()];
    this.expect('', 'nl');
    this.expect('', 'indent');
    const body: Stmt[] = [];
    while (!this.accept('', 'dedent')) {
      if (this.accept('', 'nl')) continue;
      body.push(this.stmt());
    }
    return body;
  }

  private stmt(): Stmt {
    const line = this.tok.line;
    if (this.accept('if', 'name')) return this.ifRest(line);
    if (this.accept('for', 'name')) {
      const target = this.targetList();
      this.expect('in', 'name');
      const iter = this.exprList();
      this.expect(':');
      return { k: 'for', target, iter, body: this.block(), line };
    }
    if (this.accept('while', 'name')) {
      const cond = this.expr();
      this.expect(':');
      return { k: 'while', cond, body: this.block(), line };
    }
    return this.simpleStmt();
  }

  private ifRest(line: number): Stmt {
    const cond = this.expr();
    this.expect(':');
    const then = this.block();
    let otherwise: Stmt[] = [];
    const l2 = this.tok.line;
    if (this.accept('elif', 'name')) otherwise = [this.ifRest(l2)];
    else if (this.accept('else', 'name')) {
      this.expect(':');
      otherwise = this.block();
    }
    return { k: 'if', cond, then, else: otherwise, line };
  }

  private simpleStmt(): Stmt {
    const line = this.tok.line;
    let s: Stmt;
    if (this.accept('pass', 'name')) s = { k: 'pass', line };
    else if (this.accept('return', 'name')) {
      s = { k: 'return', value: this.is('', 'nl') ? undefined : this.exprList(), line };
    } else {
      const first = this.exprList();
      if (this.accept(':')) {
        // an annotated assignment: x : List[Tensor] = ...
        this.expr();
        s = this.accept('=') ? { k: 'assign', targets: first, value: this.exprList(), line } : { k: 'pass', line };
      } else if (this.accept('=')) {
        s = { k: 'assign', targets: first, value: this.exprList(), line };
      } else if (['+=', '-=', '*=', '/='].some((o) => this.is(o))) {
        const op = this.toks[this.p++].v.slice(0, 1);
        s = { k: 'assign', targets: first, value: { k: 'binary', op, a: first, b: this.exprList() }, line };
      } else s = { k: 'expr', value: first, line };
    }
    if (!this.accept('', 'nl') && !this.accept(';')) this.fail('expected the end of the statement');
    return s;
  }

  /** Assignment targets of a for loop: names and tuples, up to 'in'. */
  private targetList(): Expr {
    const items: Expr[] = [this.postfix()];
    let tuple = false;
    while (this.accept(',')) {
      tuple = true;
      if (this.is('in', 'name')) break;
      items.push(this.postfix());
    }
    return tuple ? { k: 'tuple', items } : items[0];
  }

  /** `a, b, c` (a tuple without parentheses; a trailing comma makes a tuple). */
  private exprList(): Expr {
    const first = this.expr();
    if (!this.is(',')) return first;
    const items = [first];
    while (this.accept(',')) {
      if (this.is('=') || this.is('', 'nl') || this.is(')') || this.is(':')) break;
      items.push(this.expr());
    }
    return { k: 'tuple', items };
  }

  expr(): Expr {
    const a = this.or();
    if (this.accept('if', 'name')) {
      const cond = this.or();
      this.expect('else', 'name');
      return { k: 'ifexp', cond, a, b: this.expr() };
    }
    return a;
  }
  private or(): Expr {
    let a = this.and();
    while (this.accept('or', 'name')) a = { k: 'binary', op: 'or', a, b: this.and() };
    return a;
  }
  private and(): Expr {
    let a = this.not();
    while (this.accept('and', 'name')) a = { k: 'binary', op: 'and', a, b: this.not() };
    return a;
  }
  private not(): Expr {
    if (this.accept('not', 'name')) return { k: 'unary', op: 'not', x: this.not() };
    return this.compare();
  }
  private compare(): Expr {
    let a = this.bitOr();
    for (;;) {
      let op: string | undefined;
      if (this.tok.t === 'op' && COMPARE.has(this.tok.v)) op = this.toks[this.p++].v;
      else if (this.accept('is', 'name')) op = this.accept('not', 'name') ? 'is not' : 'is';
      else if (this.accept('in', 'name')) op = 'in';
      else if (this.is('not', 'name') && this.toks[this.p + 1]?.v === 'in') {
        this.p += 2;
        op = 'not in';
      }
      if (!op) return a;
      a = { k: 'binary', op, a, b: this.bitOr() };
    }
  }
  private binaryLevel(ops: string[], next: () => Expr): Expr {
    let a = next();
    while (this.tok.t === 'op' && ops.includes(this.tok.v)) {
      const op = this.toks[this.p++].v;
      a = { k: 'binary', op, a, b: next() };
    }
    return a;
  }
  private bitOr = (): Expr => this.binaryLevel(['|'], this.bitXor);
  private bitXor = (): Expr => this.binaryLevel(['^'], this.bitAnd);
  private bitAnd = (): Expr => this.binaryLevel(['&'], this.shift);
  private shift = (): Expr => this.binaryLevel(['<<', '>>'], this.sum);
  private sum = (): Expr => this.binaryLevel(['+', '-'], this.term);
  private term = (): Expr => this.binaryLevel(['*', '/', '//', '%', '@'], this.unary);
  private unary = (): Expr => {
    if (this.tok.t === 'op' && ['-', '+', '~'].includes(this.tok.v)) {
      const op = this.toks[this.p++].v;
      return { k: 'unary', op, x: this.unary() };
    }
    const base = this.postfix();
    if (this.accept('**')) return { k: 'binary', op: '**', a: base, b: this.unary() };
    return base;
  };

  private postfix(): Expr {
    let e = this.atom();
    for (;;) {
      if (this.accept('.')) e = { k: 'attr', obj: e, name: this.name() };
      else if (this.accept('(')) {
        const args: Expr[] = [];
        const kwargs: [string, Expr][] = [];
        while (!this.accept(')')) {
          if (this.tok.t === 'name' && this.toks[this.p + 1]?.v === '=' && this.toks[this.p + 1].t === 'op') {
            const k = this.name();
            this.expect('=');
            kwargs.push([k, this.expr()]);
          } else args.push(this.expr());
          if (!this.accept(',') && !this.is(')')) this.fail("expected ',' or ')' in the call");
        }
        e = { k: 'call', fn: e, args, kwargs };
      } else if (this.accept('[')) {
        const items: Expr[] = [];
        while (!this.accept(']')) {
          items.push(this.sliceOrExpr());
          if (!this.accept(',') && !this.is(']')) this.fail("expected ',' or ']' in the subscript");
        }
        e = { k: 'index', obj: e, index: items.length === 1 ? items[0] : { k: 'tuple', items } };
      } else return e;
    }
  }

  private sliceOrExpr(): Expr {
    const bound = () => (this.is(':') || this.is(']') || this.is(',') ? undefined : this.expr());
    const lo = bound();
    if (!this.accept(':')) return lo ?? this.fail('expected an index');
    const hi = bound();
    const step = this.accept(':') ? bound() : undefined;
    return { k: 'slice', lo, hi, step };
  }

  private atom(): Expr {
    const t = this.tok;
    if (t.t === 'num') {
      this.p++;
      if (/[jJ]$/.test(t.v)) syntaxError(this.file, t.line, `a complex number ${t.v}`);
      const float = /[.eE]/.test(t.v) && !/^0[xX]/.test(t.v);
      return { k: 'num', value: Number(t.v), float };
    }
    if (t.t === 'str') {
      this.p++;
      let s = t.v;
      // adjacent literals concatenate
      while (this.tok.t === 'str') s += this.toks[this.p++].v;
      return { k: 'str', value: s };
    }
    if (t.t === 'name') {
      this.p++;
      if (t.v === 'True' || t.v === 'False') return { k: 'const', value: t.v === 'True' };
      if (t.v === 'None') return { k: 'const', value: null };
      return { k: 'name', id: t.v };
    }
    if (this.accept('(')) {
      if (this.accept(')')) return { k: 'tuple', items: [] };
      const first = this.expr();
      if (this.accept(')')) return first;
      const items = [first];
      while (this.accept(',')) {
        if (this.is(')')) break;
        items.push(this.expr());
      }
      this.expect(')');
      return { k: 'tuple', items };
    }
    if (this.accept('[')) {
      const items: Expr[] = [];
      while (!this.accept(']')) {
        items.push(this.expr());
        if (!this.accept(',') && !this.is(']')) this.fail("expected ',' or ']' in the list");
      }
      return { k: 'list', items };
    }
    if (this.accept('{')) {
      const items: [Expr, Expr][] = [];
      while (!this.accept('}')) {
        const key = this.expr();
        this.expect(':');
        items.push([key, this.expr()]);
        if (!this.accept(',') && !this.is('}')) this.fail("expected ',' or '}' in the dict");
      }
      return { k: 'dict', items };
    }
    return this.fail('expected an expression');
  }
}

/**
 * Parses one code file of a TorchScript archive; `prefix` is its module's qualified name (code/__torch__/a/b.py ->
 * '__torch__.a.b'), which qualifies its classes and functions.
 */
export function parseCodeFile(src: string, file: string, prefix: string): CodeFile {
  return new Parser(tokenize(src, file), file).codeFile(prefix);
}
