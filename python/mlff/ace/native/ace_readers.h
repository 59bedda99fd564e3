/* The two file readers behind read_model() (internal to the ACE core). Each fills a Model,
 * records the line of every key it reads in Model::key_lines and throws FormatError for
 * what it can see locally (syntax, types, lengths, missing keys); Model::validate() then
 * checks the cross-references (species indices, n/l ranges, cutoffs). */
#ifndef MLFF_ACE_READERS_H
#define MLFF_ACE_READERS_H

#include "ace_model.h"

#include <string>

namespace mlff_ace {

Model read_yace(const std::string &text, const std::string &source);         // .yace (YAML)
Model read_ace_text(const std::string &text, const std::string &source);     // old .ace text

// Key paths shared by the readers, validate() and the Python dict converter.
std::string bond_key(int mu_i, int mu_j);             // "bonds[0, 1]"
std::string embedding_key(int mu);                    // "embeddings[0]"
std::string function_key(int mu, size_t index);       // "functions[0][12]"

}    // namespace mlff_ace

#endif
