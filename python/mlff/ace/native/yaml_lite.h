/* yaml_lite: the YAML subset that ACE potential files use, parsed without a dependency.
 *
 * pyace and pacemaker write .yace (C-tilde) and .yaml (B-basis) files with yaml-cpp's
 * emitter: block mappings and sequences, flow mappings and sequences (also as keys, e.g.
 * `[0, 1]: {...}`), plain, single- and double-quoted scalars, comments. That is what this
 * parser accepts; anchors, aliases, tags, block scalars (| >) and multi-document streams
 * are refused with an Error that names the line, never misread. Every node remembers its
 * line so that readers built on it can say where a wrong value is.
 */
#ifndef MLFF_YAML_LITE_H
#define MLFF_YAML_LITE_H

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace yaml_lite {

// A syntax error; the message is "<source>:<line>:<column>: <what>".
class Error : public std::runtime_error {
 public:
  Error(const std::string &message, int line) : std::runtime_error(message), line_(line) {}
  int line() const { return line_; }

 private:
  int line_;
};

struct Node {
  enum class Kind { Null, Scalar, Sequence, Mapping };
  Kind kind = Kind::Null;
  std::string value;                            // Scalar: the text, quotes removed
  bool quoted = false;                          // Scalar: written in quotes (never null/number)
  int line = 0;                                 // 1-based line of the node's first character
  std::vector<Node> items;                      // Sequence
  std::vector<std::pair<Node, Node>> entries;   // Mapping, in file order (keys are unique)

  bool is_null() const { return kind == Kind::Null; }
  bool is_scalar() const { return kind == Kind::Scalar; }
  bool is_sequence() const { return kind == Kind::Sequence; }
  bool is_mapping() const { return kind == Kind::Mapping; }
  // The mapping's value whose key prints as `key` (see text()); nullptr when absent.
  const Node *find(const std::string &key) const;
  // A canonical one-line rendering: scalars as written, `[a, b]`, `{k: v}`. Used for
  // keys (`[0, 1]`) and in messages.
  std::string text() const;
};

// Parses one YAML document; an empty document gives a Null node.
Node parse(const std::string &text, const std::string &source);

// Scalar conversions, strict: the whole text must be the number. YAML 1.2 core-schema
// spellings are accepted (`1e-3`, `.5`, `-.inf`, `.nan`, `0x1F` is not).
bool to_double(const Node &node, double *out);
bool to_int(const Node &node, long long *out);

}    // namespace yaml_lite

#endif
