#include "yaml_lite.h"

#include <cctype>
#include <charconv>
#include <limits>
#include <set>

namespace yaml_lite {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_break_or_end(char c) { return c == '\n' || c == '\0'; }
bool is_flow_indicator(char c) { return c == ',' || c == '[' || c == ']' || c == '{' || c == '}'; }

// Recursive descent over the text with a cursor; block structure is decided by the
// column of each line's first character, flow collections by their brackets.
class Parser {
 public:
  Parser(const std::string &text, const std::string &source) : source_(source)
  {
    // CRLF files: the carriage returns carry no meaning
    text_.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i)
      if (!(text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) text_.push_back(text[i]);
  }

  Node document()
  {
    skip_to_content();
    while (!at_end() && column() == 0 && peek() == '%') skip_line();    // %YAML directives
    skip_to_content();
    if (at_marker("---")) {
      advance(3);
      skip_to_content();
    }
    Node root;
    root.line = line_;
    if (!at_end() && !at_marker("...")) {
      // content on the `---` line itself sits at a column > 0 but is still top level
      root = node_here(column());
    }
    skip_to_content();
    if (at_marker("...")) {
      advance(3);
      skip_to_content();
    }
    if (at_marker("---")) fail("a second YAML document: only one document per file is supported");
    if (!at_end()) fail("unexpected content after the end of the document");
    return root;
  }

 private:
  std::string text_;
  const std::string &source_;
  size_t pos_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
  std::vector<std::string> where_;    // keys and indices leading to what is being read

  // Names the place being read for messages: keys, [k] for integer keys and indices.
  struct Within {
    Within(Parser &p, const Node &key) : p_(p)
    {
      const std::string t = key.text();
      long long k;
      if (key.is_scalar() && to_int(key, &k))
        p_.where_.push_back("[" + t + "]");
      else
        p_.where_.push_back((t.empty() || t[0] == '[' || p_.where_.empty()) ? t : "." + t);
    }
    Within(Parser &p, size_t index) : p_(p) { p_.where_.push_back("[" + std::to_string(index) + "]"); }
    ~Within() { p_.where_.pop_back(); }
    Parser &p_;
  };

  bool at_end() const { return pos_ >= text_.size(); }
  char peek(size_t k = 0) const { return pos_ + k < text_.size() ? text_[pos_ + k] : '\0'; }
  int column() const { return static_cast<int>(pos_ - line_start_); }
  void advance(size_t n = 1)
  {
    for (size_t i = 0; i < n && pos_ < text_.size(); ++i) {
      if (text_[pos_] == '\n') {
        ++line_;
        line_start_ = pos_ + 1;
      }
      ++pos_;
    }
  }
  bool at_marker(const char *m) const
  {
    return column() == 0 && text_.compare(pos_, 3, m) == 0 &&
           (is_blank(peek(3)) || is_break_or_end(peek(3)));
  }
  bool at_dash_item() const { return peek() == '-' && (is_blank(peek(1)) || is_break_or_end(peek(1))); }

  [[noreturn]] void fail(const std::string &what) const
  {
    std::string in;
    for (const auto &w : where_) in += w;
    if (!in.empty() && in[0] == '.') in.erase(0, 1);
    throw Error(source_ + ":" + std::to_string(line_) + ":" + std::to_string(column() + 1) + ": " +
                    (in.empty() ? "" : in + ": ") + what,
                line_);
  }

  void skip_line()
  {
    while (!at_end() && peek() != '\n') advance();
    advance();
  }
  void skip_inline_blanks()
  {
    while (is_blank(peek())) advance();
  }
  // Skips blank lines, comments and indentation up to the next content character.
  void skip_to_content()
  {
    while (!at_end()) {
      char c = peek();
      if (c == ' ') {
        advance();
      } else if (c == '\t') {
        // a tab before the first content of a line would be indentation, which YAML forbids
        bool leading = true;
        for (size_t i = line_start_; i < pos_; ++i)
          if (!is_blank(text_[i])) leading = false;
        if (leading) {
          size_t p = pos_;
          while (p < text_.size() && is_blank(text_[p])) ++p;
          if (p < text_.size() && text_[p] != '\n' && text_[p] != '#')
            fail("a tab character in indentation (YAML allows only spaces)");
        }
        advance();
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') advance();
      } else if (c == '\n') {
        advance();
      } else {
        return;
      }
    }
  }
  // After a value on a block line only blanks and a comment may follow.
  void expect_line_end()
  {
    skip_inline_blanks();
    if (peek() == '#') {
      while (!at_end() && peek() != '\n') advance();
    }
    if (!is_break_or_end(peek())) fail("unexpected text after the value: '" + rest_of_line() + "'");
  }
  std::string rest_of_line() const
  {
    size_t e = text_.find('\n', pos_);
    return text_.substr(pos_, (e == std::string::npos ? text_.size() : e) - pos_);
  }

  void refuse_unsupported(char c) const
  {
    switch (c) {
      case '&': fail("YAML anchors (&) are not supported");
      case '*': fail("YAML aliases (*) are not supported");
      case '!': fail("YAML tags (!) are not supported");
      case '|':
      case '>': fail("YAML block scalars (| and >) are not supported");
      case '@':
      case '`': fail(std::string("'") + c + "' cannot start a YAML value");
      default: break;
    }
  }

  // A block node whose content is at the cursor, at column `indent`.
  Node node_here(int indent)
  {
    if (at_dash_item()) return block_sequence(indent);
    if (peek() == '?' && (is_blank(peek(1)) || is_break_or_end(peek(1))))
      fail("explicit mapping keys ('? ') are not supported");
    if (looks_like_key()) return block_mapping(indent);
    Node v = inline_value();
    expect_line_end();
    return v;
  }

  // The value of a `key:` with nothing after it on the line, or a nested sequence item.
  Node block_child(int parent_indent, bool sequence_at_parent_indent_allowed)
  {
    skip_to_content();
    Node n;
    n.line = line_;
    if (at_end()) return n;
    int c = column();
    if (c > parent_indent) return node_here(c);
    if (c == parent_indent && sequence_at_parent_indent_allowed && at_dash_item()) return block_sequence(c);
    return n;    // an empty value: null
  }

  bool looks_like_key()
  {
    const size_t pos = pos_;
    const int line = line_;
    const size_t line_start = line_start_;
    const size_t depth = where_.size();
    bool is_key = false;
    try {
      key();
      skip_inline_blanks();
      is_key = peek() == ':' && (is_blank(peek(1)) || is_break_or_end(peek(1)));
    } catch (const Error &) {
      is_key = false;    // not a key; parsing it as a value reports the real problem
    }
    pos_ = pos;
    line_ = line;
    line_start_ = line_start;
    where_.resize(depth);    // an aborted attempt leaves no names behind
    return is_key;
  }

  Node key()
  {
    char c = peek();
    if (c == '[' || c == '{') return flow_node();
    if (c == '"' || c == '\'') return quoted();
    refuse_unsupported(c);
    Node k;
    k.kind = Node::Kind::Scalar;
    k.line = line_;
    size_t start = pos_;
    while (!is_break_or_end(peek())) {
      if (peek() == ':' && (is_blank(peek(1)) || is_break_or_end(peek(1)))) break;
      if (peek() == '#' && pos_ > start && is_blank(text_[pos_ - 1])) break;
      advance();
    }
    k.value = trimmed(start, pos_);
    if (k.value.empty()) fail("an empty mapping key");
    return k;
  }

  Node block_mapping(int indent)
  {
    Node m;
    m.kind = Node::Kind::Mapping;
    m.line = line_;
    std::set<std::string> seen;
    while (true) {
      Node k = key();
      skip_inline_blanks();
      if (peek() != ':') fail("expected ':' after the key '" + k.text() + "'");
      advance();
      if (!seen.insert(k.text()).second) fail("duplicate key '" + k.text() + "'");
      skip_inline_blanks();
      Node v;
      Within within(*this, k);
      if (peek() == '#' || is_break_or_end(peek())) {
        v = block_child(indent, true);
      } else {
        if (at_dash_item()) fail("a block sequence cannot start on the line of its key");
        v = inline_value();
        expect_line_end();
        if (v.kind == Node::Kind::Scalar && !v.quoted && looks_like_nested_key(v.value))
          fail("a mapping value cannot itself be 'key: value' on the same line");
      }
      m.entries.emplace_back(std::move(k), std::move(v));
      skip_to_content();
      if (at_end() || at_marker("...") || at_marker("---")) break;
      int c = column();
      if (c < indent) break;
      if (c > indent) fail("unexpected indentation: expected a key at column " + std::to_string(indent + 1));
      if (at_dash_item()) {
        // `key:\n- a` was consumed by block_child; a dash here follows a scalar value
        fail("a sequence item where a mapping key was expected");
      }
    }
    return m;
  }
  static bool looks_like_nested_key(const std::string &v)
  {
    for (size_t i = 0; i + 1 < v.size(); ++i)
      if (v[i] == ':' && is_blank(v[i + 1])) return true;
    return false;
  }

  Node block_sequence(int indent)
  {
    Node s;
    s.kind = Node::Kind::Sequence;
    s.line = line_;
    while (true) {
      advance();    // '-'
      skip_inline_blanks();
      Within within(*this, s.items.size());
      if (peek() == '#' || is_break_or_end(peek()))
        s.items.push_back(block_child(indent, false));
      else
        s.items.push_back(node_here(column()));
      skip_to_content();
      if (at_end() || at_marker("...") || at_marker("---")) break;
      int c = column();
      if (c < indent) break;
      if (c > indent) fail("unexpected indentation: expected '- ' at column " + std::to_string(indent + 1));
      if (!at_dash_item()) break;    // a key of the enclosing mapping at the same column
    }
    return s;
  }

  Node inline_value()
  {
    char c = peek();
    if (c == '[' || c == '{') return flow_node();
    if (c == '"' || c == '\'') return quoted();
    refuse_unsupported(c);
    Node v;
    v.kind = Node::Kind::Scalar;
    v.line = line_;
    size_t start = pos_;
    while (!is_break_or_end(peek())) {
      if (peek() == '#' && pos_ > start && is_blank(text_[pos_ - 1])) break;
      advance();
    }
    v.value = trimmed(start, pos_);
    mark_null(v);
    return v;
  }

  std::string trimmed(size_t a, size_t b) const
  {
    while (b > a && is_blank(text_[b - 1])) --b;
    return text_.substr(a, b - a);
  }
  static void mark_null(Node &v)
  {
    if (!v.quoted && (v.value.empty() || v.value == "~" || v.value == "null" || v.value == "Null" ||
                      v.value == "NULL")) {
      v.kind = Node::Kind::Null;
      v.value.clear();
    }
  }

  // Flow context: whitespace, line breaks and comments separate tokens freely.
  void skip_flow_space()
  {
    while (!at_end()) {
      char c = peek();
      if (c == ' ' || c == '\t' || c == '\n') {
        advance();
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') advance();
      } else {
        return;
      }
    }
  }

  Node flow_node()
  {
    skip_flow_space();
    char c = peek();
    if (c == '[') return flow_sequence();
    if (c == '{') return flow_mapping();
    if (c == '"' || c == '\'') return quoted();
    if (at_end()) fail("the file ends where a value was expected");
    refuse_unsupported(c);
    if (c == ',' || c == ']' || c == '}' || c == ':') fail(std::string("expected a value, found '") + c + "'");
    Node v;
    v.kind = Node::Kind::Scalar;
    v.line = line_;
    size_t start = pos_;
    while (!at_end()) {
      char d = peek();
      if (d == '\n' || is_flow_indicator(d)) break;
      if (d == ':' && (is_blank(peek(1)) || is_break_or_end(peek(1)) || is_flow_indicator(peek(1)))) break;
      if (d == '#' && pos_ > start && is_blank(text_[pos_ - 1])) break;
      advance();
    }
    v.value = trimmed(start, pos_);
    mark_null(v);
    return v;
  }

  Node flow_sequence()
  {
    Node s;
    s.kind = Node::Kind::Sequence;
    s.line = line_;
    const int open_line = line_;
    advance();    // '['
    while (true) {
      skip_flow_space();
      if (at_end()) fail("unterminated flow sequence '[' opened at line " + std::to_string(open_line));
      if (peek() == ']') {
        advance();
        return s;
      }
      {
        Within within(*this, s.items.size());
        s.items.push_back(flow_node());
      }
      skip_flow_space();
      if (at_end()) fail("unterminated flow sequence '[' opened at line " + std::to_string(open_line));
      if (peek() == ':') fail("'key: value' pairs inside a flow sequence are not supported");
      if (peek() == ',') {
        advance();
      } else if (peek() != ']') {
        fail(std::string("expected ',' or ']' in the flow sequence opened at line ") + std::to_string(open_line) +
             ", found '" + peek() + "'");
      }
    }
  }

  Node flow_mapping()
  {
    Node m;
    m.kind = Node::Kind::Mapping;
    m.line = line_;
    const int open_line = line_;
    std::set<std::string> seen;
    advance();    // '{'
    while (true) {
      skip_flow_space();
      if (at_end()) fail("unterminated flow mapping '{' opened at line " + std::to_string(open_line));
      if (peek() == '}') {
        advance();
        return m;
      }
      Node k = flow_node();
      skip_flow_space();
      if (peek() != ':') fail("expected ':' after the key '" + k.text() + "'");
      advance();
      skip_flow_space();
      Node v;
      v.line = line_;
      if (at_end()) fail("unterminated flow mapping '{' opened at line " + std::to_string(open_line));
      if (peek() != ',' && peek() != '}') {
        Within within(*this, k);
        v = flow_node();
      }
      if (!seen.insert(k.text()).second) fail("duplicate key '" + k.text() + "'");
      m.entries.emplace_back(std::move(k), std::move(v));
      skip_flow_space();
      if (at_end()) fail("unterminated flow mapping '{' opened at line " + std::to_string(open_line));
      if (peek() == ',') {
        advance();
      } else if (peek() != '}') {
        fail(std::string("expected ',' or '}' in the flow mapping opened at line ") + std::to_string(open_line) +
             ", found '" + peek() + "'");
      }
    }
  }

  Node quoted()
  {
    Node v;
    v.kind = Node::Kind::Scalar;
    v.quoted = true;
    v.line = line_;
    const int open_line = line_;
    const char q = peek();
    advance();
    while (true) {
      if (at_end()) fail("unterminated quoted string opened at line " + std::to_string(open_line));
      char c = peek();
      if (c == q) {
        if (q == '\'' && peek(1) == '\'') {    // '' is an escaped quote
          v.value.push_back('\'');
          advance(2);
          continue;
        }
        advance();
        return v;
      }
      if (c == '\n') {    // line folding: a break inside quotes reads as one space
        while (!v.value.empty() && is_blank(v.value.back())) v.value.pop_back();
        advance();
        skip_inline_blanks();
        v.value.push_back(' ');
        continue;
      }
      if (q == '"' && c == '\\') {
        advance();
        char e = peek();
        switch (e) {
          case 'n': v.value.push_back('\n'); break;
          case 't': v.value.push_back('\t'); break;
          case 'r': v.value.push_back('\r'); break;
          case '0': v.value.push_back('\0'); break;
          case '\\': v.value.push_back('\\'); break;
          case '"': v.value.push_back('"'); break;
          case '/': v.value.push_back('/'); break;
          case ' ': v.value.push_back(' '); break;
          case 'x':
          case 'u':
          case 'U': {
            const int digits = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
            unsigned long cp = 0;
            for (int i = 1; i <= digits; ++i) {
              char h = peek(static_cast<size_t>(i));
              int d = (h >= '0' && h <= '9') ? h - '0'
                      : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                      : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                               : -1;
              if (d < 0) fail("a malformed \\" + std::string(1, e) + " escape in a quoted string");
              cp = cp * 16 + static_cast<unsigned long>(d);
            }
            append_utf8(v.value, cp);
            advance(static_cast<size_t>(digits));
            break;
          }
          default: fail(std::string("an unknown escape '\\") + e + "' in a quoted string");
        }
        advance();
        continue;
      }
      v.value.push_back(c);
      advance();
    }
  }

  static void append_utf8(std::string &out, unsigned long cp)
  {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
};

}    // namespace

const Node *Node::find(const std::string &key) const
{
  if (kind != Kind::Mapping) return nullptr;
  for (const auto &e : entries)
    if (e.first.text() == key) return &e.second;
  return nullptr;
}

std::string Node::text() const
{
  switch (kind) {
    case Kind::Null: return "null";
    case Kind::Scalar: return value;
    case Kind::Sequence: {
      std::string s = "[";
      for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i].text();
      return s + "]";
    }
    case Kind::Mapping: {
      std::string s = "{";
      for (size_t i = 0; i < entries.size(); ++i)
        s += (i ? ", " : "") + entries[i].first.text() + ": " + entries[i].second.text();
      return s + "}";
    }
  }
  return "";
}

Node parse(const std::string &text, const std::string &source)
{
  return Parser(text, source).document();
}

bool to_double(const Node &node, double *out)
{
  if (node.kind != Node::Kind::Scalar || node.quoted || node.value.empty()) return false;
  std::string v = node.value;
  bool negative = false;
  size_t i = 0;
  if (v[0] == '+' || v[0] == '-') {
    negative = v[0] == '-';
    i = 1;
  }
  const std::string body = v.substr(i);
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    *out = negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    return true;
  }
  if (body == ".nan" || body == ".NaN" || body == ".NAN") {
    if (i) return false;
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  // digits, one point, an exponent: from_chars alone would also take "inf", "nan" and hex
  if (body.empty() || !(std::isdigit(static_cast<unsigned char>(body[0])) || body[0] == '.')) return false;
  double x = 0.0;
  auto res = std::from_chars(body.data(), body.data() + body.size(), x, std::chars_format::general);
  if (res.ec != std::errc() || res.ptr != body.data() + body.size()) return false;
  *out = negative ? -x : x;
  return true;
}

bool to_int(const Node &node, long long *out)
{
  if (node.kind != Node::Kind::Scalar || node.quoted || node.value.empty()) return false;
  const std::string &v = node.value;
  size_t i = (v[0] == '+') ? 1 : 0;
  if (i && v.size() > 1 && v[1] == '-') return false;
  long long x = 0;
  auto res = std::from_chars(v.data() + i, v.data() + v.size(), x, 10);
  if (res.ec != std::errc() || res.ptr != v.data() + v.size() || i == v.size()) return false;
  *out = x;
  return true;
}

}    // namespace yaml_lite
