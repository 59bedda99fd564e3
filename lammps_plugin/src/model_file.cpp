/* mlff LAMMPS plugin: exported-model archive and metadata reader (no torch here). */
#include "model_file.h"

#include "json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

using LAMMPS_NS::json;

namespace mlff_lmp {
namespace {

const char *const SYMBOLS[] = {
    "",   "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si",
    "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac",
    "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf",
    "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
constexpr int NSYMBOLS = sizeof(SYMBOLS) / sizeof(SYMBOLS[0]);

const char *const METADATA_SUFFIX = "/extra/mlff_metadata.json";

uint32_t crc32(const unsigned char *data, size_t n)
{
  static uint32_t table[256];
  static bool init = false;
  if (!init) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    init = true;
  }
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

struct Reader {
  const std::string &buf;
  const std::string &path;
  uint64_t u(size_t off, int bytes) const
  {
    if (off + bytes > buf.size()) corrupt("an entry points past the end of the file");
    uint64_t v = 0;
    for (int k = bytes - 1; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(buf[off + k]);
    return v;
  }
  [[noreturn]] void corrupt(const std::string &why) const
  {
    throw std::runtime_error(path + " is not a readable model archive (" + why +
                             "); the file is truncated or corrupt: re-export or re-copy it");
  }
};

// Returns the metadata text; verifies the CRC of every stored entry on the way.
std::string read_archive(const std::string &path, const std::string &buf)
{
  Reader rd{buf, path};
  if (buf.size() < 22) rd.corrupt("too short to be a zip archive");
  // end of central directory: last record with the signature, within the comment limit
  size_t eocd = std::string::npos;
  size_t stop = buf.size() > 22 + 65535 ? buf.size() - 22 - 65535 : 0;
  for (size_t p = buf.size() - 22 + 1; p-- > stop;) {
    if (rd.u(p, 4) == 0x06054b50u) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::string::npos) rd.corrupt("no zip directory found");
  uint64_t count = rd.u(eocd + 10, 2);
  uint64_t cd_offset = rd.u(eocd + 16, 4);
  if (count == 0xFFFF || cd_offset == 0xFFFFFFFFu) {
    if (eocd < 20 || rd.u(eocd - 20, 4) != 0x07064b50u) rd.corrupt("broken zip64 directory");
    uint64_t z64 = rd.u(eocd - 20 + 8, 8);
    if (rd.u(z64, 4) != 0x06064b50u) rd.corrupt("broken zip64 directory");
    count = rd.u(z64 + 32, 8);
    cd_offset = rd.u(z64 + 48, 8);
  }

  std::string metadata;
  bool found = false, looks_torchscript = false;
  size_t p = cd_offset;
  for (uint64_t e = 0; e < count; ++e) {
    if (rd.u(p, 4) != 0x02014b50u) rd.corrupt("damaged zip directory");
    uint64_t method = rd.u(p + 10, 2);
    uint32_t crc = static_cast<uint32_t>(rd.u(p + 16, 4));
    uint64_t csize = rd.u(p + 20, 4);
    uint64_t usize = rd.u(p + 24, 4);
    uint64_t nlen = rd.u(p + 28, 2), xlen = rd.u(p + 30, 2), clen = rd.u(p + 32, 2);
    uint64_t local = rd.u(p + 42, 4);
    if (p + 46 + nlen > buf.size()) rd.corrupt("damaged zip directory");
    std::string name = buf.substr(p + 46, nlen);
    // zip64 extra field: 8-byte values for each 32-bit field that overflowed, in order
    size_t x = p + 46 + nlen, xend = x + xlen;
    while (x + 4 <= xend) {
      uint64_t id = rd.u(x, 2), sz = rd.u(x + 2, 2);
      if (id == 0x0001) {
        size_t q = x + 4;
        if (usize == 0xFFFFFFFFu) usize = rd.u(q, 8), q += 8;
        if (csize == 0xFFFFFFFFu) csize = rd.u(q, 8), q += 8;
        if (local == 0xFFFFFFFFu) local = rd.u(q, 8), q += 8;
      }
      x += 4 + sz;
    }
    p += 46 + nlen + xlen + clen;

    if (rd.u(local, 4) != 0x04034b50u) rd.corrupt("damaged entry " + name);
    size_t data = local + 30 + rd.u(local + 26, 2) + rd.u(local + 28, 2);
    if (data + csize > buf.size()) rd.corrupt("entry " + name + " is cut off");
    if (name.size() >= 10 && (name.find("/code/") != std::string::npos ||
                              name.compare(name.size() - 10, 10, "/data.pkl") == 0))
      looks_torchscript = true;
    if (method != 0) continue;    // torch stores entries uncompressed; nothing else to check
    if (crc32(reinterpret_cast<const unsigned char *>(buf.data()) + data, csize) != crc)
      throw std::runtime_error(path + " is corrupt (checksum mismatch in " + name +
                               "); re-export or re-copy it");
    size_t sl = std::strlen(METADATA_SUFFIX);
    if (name.size() >= sl && name.compare(name.size() - sl, sl, METADATA_SUFFIX) == 0) {
      metadata = buf.substr(data, usize);
      found = true;
    }
  }
  if (!found) {
    if (looks_torchscript)
      throw std::runtime_error(path +
                               " is a TorchScript file but not an mlff model (it has no "
                               "mlff_metadata.json); export models with mlff.export_model or "
                               "`mlff export`");
    throw std::runtime_error(path +
                             " is not an exported mlff model (a torch.save file or checkpoint?); "
                             "use `mlff export CHECKPOINT -o model.pt`");
  }
  return metadata;
}

}    // namespace

int atomic_number(const std::string &symbol)
{
  for (int z = 1; z < NSYMBOLS; ++z)
    if (symbol == SYMBOLS[z]) return z;
  return 0;
}

std::string element_symbol(int z)
{
  return (z > 0 && z < NSYMBOLS) ? SYMBOLS[z] : "";
}

std::string read_file(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("model file '" + path + "' does not exist or cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ModelInfo::contract_key() const
{
  auto g17 = [](double x) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", x);
    return std::string(buf);
  };
  std::string key = "elements=";
  for (size_t k = 0; k < elements.size(); ++k) key += (k ? "," : "") + std::to_string(elements[k]);
  key += ";lists=";
  for (size_t k = 0; k < lists.size(); ++k) {
    key += (k ? "," : "") + lists[k].name + ":" + g17(lists[k].cutoff);
    if (lists[k].reach >= 0.0) key += "@" + g17(lists[k].reach);
  }
  key += ";range=" + g17(interaction_range) + ";dtype=" + dtype;
  return key;
}

const OutputInfo *ModelInfo::output(const std::string &name) const
{
  for (const auto &o : outputs)
    if (o.name == name) return &o;
  return nullptr;
}

ModelInfo parse_model_info(const std::string &path, const std::string &buf)
{
  const std::string text = read_archive(path, buf);

  json meta;
  try {
    meta = json::parse(text);
  } catch (const std::exception &e) {
    throw std::runtime_error(path + ": metadata is not valid JSON (" + e.what() + ")");
  }
  ModelInfo info;
  info.path = path;
  try {
    info.contract_version = meta.value("contract_version", 0);
    if (info.contract_version < 1 || info.contract_version > CONTRACT_VERSION) {
      throw std::runtime_error(
          "was written for mlff contract version " + std::to_string(info.contract_version) +
          "; this plugin reads versions 1, 2 and " + std::to_string(CONTRACT_VERSION) +
          ". Re-export the model with this mlff or install the mlff version that wrote it (" +
          meta.value("mlff_version", std::string("unknown")) + ")");
    }
    info.kind = meta.at("kind").get<std::string>();
    info.elements = meta.at("elements").get<std::vector<int>>();
    info.cutoff = meta.at("cutoff").get<double>();
    info.num_interactions = meta.at("num_interactions").get<int>();
    info.interaction_range = meta.at("interaction_range").get<double>();
    info.dtype = meta.at("dtype").get<std::string>();
    info.mlff_version = meta.value("mlff_version", std::string("unknown"));
    info.torch_version = meta.value("torch_version", std::string("unknown"));
    if (info.contract_version == 1) {
      info.lists.push_back({"default", info.cutoff});    // one list; outputs were names only
    } else {
      for (const auto &nl : meta.at("neighbor_lists")) {
        ListInfo list{nl.at("name").get<std::string>(), nl.at("cutoff").get<double>(), -1.0};
        if (nl.contains("reach") && !nl.at("reach").is_null()) list.reach = nl.at("reach").get<double>();
        info.lists.push_back(list);
      }
      for (const auto &o : meta.at("outputs")) {
        OutputInfo out;
        out.name = o.at("name").get<std::string>();
        out.per_atom = o.value("per_atom", true);
        out.unit = o.value("unit", std::string());
        const auto shape = o.value("shape", std::vector<int>());
        for (int d : shape) {
          if (d < 1) throw std::runtime_error("declares output '" + out.name + "' with a non-positive dimension");
          out.width *= d;
        }
        out.members = shape.empty() ? 0 : shape.front();
        out.partial = o.value("partial", false);
        if (o.contains("derived_from") && !o.at("derived_from").is_null())
          out.derived_from = o.at("derived_from").get<std::string>();
        if (out.name != "energies") info.outputs.push_back(out);
      }
      for (const auto &out : info.outputs) {
        if (!out.derived()) continue;
        const OutputInfo *src = info.output(out.derived_from);
        if (!src || !src->partial || src->members < 1 || src->derived() || src->per_atom != out.per_atom ||
            out.width != 1)
          throw std::runtime_error("declares output '" + out.name + "' derived from '" + out.derived_from +
                                   "', which is not a partial member output of the model");
      }
      info.fidelities = meta.value("fidelities", std::vector<std::string>());
      info.uses_charge = meta.value("uses_charge", false);
      info.global = meta.value("locality", std::string("local")) == "global";
      info.global_sums = meta.value("global_sums", 0);
      if (meta.contains("min_distance") && !meta.at("min_distance").is_null())
        info.min_distance = meta.at("min_distance").get<double>();
      info.geometry_inputs = meta.value("geometry_inputs", std::vector<std::string>());
      if (meta.contains("message_passing") && !meta.at("message_passing").is_null()) {
        const auto &mp = meta.at("message_passing");
        info.mp_layers = mp.at("layers").get<int>();
        info.mp_width = mp.at("width").get<int>();
        if (info.contract_version < 3)
          throw std::runtime_error("declares message_passing, a contract version 3 extension, but says version " +
                                   std::to_string(info.contract_version));
        if (info.mp_layers != info.num_interactions || info.mp_width < 1 || info.lists.size() != 1 ||
            info.global || !info.geometry_inputs.empty() || !info.outputs.empty())
          throw std::runtime_error("declares message_passing (layer exchange), which needs one neighbour list, "
                                   "layers = num_interactions, a positive width, a local model and no "
                                   "geometry inputs or named outputs");
      }
      if (meta.contains("compiled") && !meta.at("compiled").is_null()) {
        const auto &c = meta.at("compiled");
        info.compiled_devices = c.value("devices", std::vector<std::string>());
        if (info.compiled_devices.empty())
          throw std::runtime_error("is a compiled package that names no device");
        info.compiled_isa = c.value("cpu_isa", std::string("none"));
        info.compiled_torch = c.value("torch_version", std::string("unknown"));
        if (c.contains("fallback") && !c.at("fallback").is_null())
          info.compiled_fallback = c.at("fallback").get<std::string>();
      }
      for (const auto &name : info.geometry_inputs)
        if (name != "positions" && name != "cell")
          throw std::runtime_error("needs the geometry input '" + name +
                                   "', which this plugin does not provide (it passes positions "
                                   "and cell); update the mlff LAMMPS plugin");
    }
  } catch (const std::runtime_error &e) {
    throw std::runtime_error(path + " " + e.what());
  } catch (const std::exception &e) {
    throw std::runtime_error(path + ": invalid mlff metadata (" + e.what() + ")");
  }
  if (info.elements.empty()) throw std::runtime_error(path + ": the model lists no elements");
  for (int z : info.elements)
    if (element_symbol(z).empty())
      throw std::runtime_error(path + ": invalid atomic number " + std::to_string(z));
  if (info.lists.empty()) throw std::runtime_error(path + ": the model declares no neighbour list");
  double largest = 0.0;
  for (const auto &nl : info.lists) {
    if (!(nl.cutoff > 0.0))
      throw std::runtime_error(path + ": neighbour list '" + nl.name + "' has a non-positive cutoff");
    largest = std::max(largest, nl.cutoff);
  }
  if (std::fabs(largest - info.cutoff) > 1e-12)
    throw std::runtime_error(path + ": cutoff is not the largest neighbour-list cutoff");
  if (info.num_interactions < 1)
    throw std::runtime_error(path + ": num_interactions must be at least 1");
  if (info.interaction_range + 1e-12 <
      std::max(info.lists[0].cutoff * info.num_interactions, info.cutoff))
    throw std::runtime_error(path + ": interaction_range is smaller than what the neighbour lists reach");
  if (info.dtype != "float32" && info.dtype != "float64")
    throw std::runtime_error(path + ": dtype must be float32 or float64, not " + info.dtype);
  return info;
}

}    // namespace mlff_lmp
