/* Extrapolation grade: .asi reader, per-atom vectors and gamma (see ace_grade.h). */
#include "ace_grade.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#ifdef MLFF_ACE_HAVE_ZLIB
#include <zlib.h>
#endif

namespace mlff_ace {

namespace {

// ---------------------------------------------------------------------------------------
// .npz: a zip archive (numpy writes it with zipfile, stored by np.savez, deflated by
// np.savez_compressed, with zip64 extra fields) of .npy arrays.
// ---------------------------------------------------------------------------------------

uint32_t crc32_of(const unsigned char *p, size_t n)
{
  struct Table {
    uint32_t t[256];
    Table()
    {
      for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
      }
    }
  };
  static const Table table;    // initialised once, thread-safely
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table.t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

class Bytes {
 public:
  Bytes(const std::string &b, const std::string &source) : b_(b), source_(source) {}
  [[noreturn]] void corrupt(const std::string &what) const
  {
    throw FormatError(source_ + ": not a readable active-set file (.asi = numpy .npz): " + what);
  }
  uint64_t u(size_t pos, int n) const
  {
    if (pos + n > b_.size() || pos + n < pos) corrupt("truncated");
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b_[pos + i]);
    return v;
  }
  size_t size() const { return b_.size(); }
  const std::string &str() const { return b_; }

 private:
  const std::string &b_;
  std::string source_;
};

struct ZipEntry {
  std::string name;
  int method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
};

// Values of a zip64 extra field (id 1) replace those of the 32-bit fields that are 0xFFFFFFFF,
// in the order usize, csize, offset.
void apply_zip64(const Bytes &rd, size_t extra, size_t extra_len, ZipEntry &e, bool u_max, bool c_max, bool o_max)
{
  size_t p = extra, end = extra + extra_len;
  while (p + 4 <= end) {
    const uint32_t id = static_cast<uint32_t>(rd.u(p, 2)), len = static_cast<uint32_t>(rd.u(p + 2, 2));
    if (p + 4 + len > end) rd.corrupt("damaged extra field");
    if (id == 1) {
      size_t q = p + 4;
      if (u_max) { e.usize = rd.u(q, 8); q += 8; }
      if (c_max) { e.csize = rd.u(q, 8); q += 8; }
      if (o_max) { e.offset = rd.u(q, 8); q += 8; }
      if (q > p + 4 + len) rd.corrupt("damaged zip64 extra field");
    }
    p += 4 + len;
  }
}

std::vector<ZipEntry> zip_directory(const Bytes &rd)
{
  const size_t n = rd.size();
  if (n < 22) rd.corrupt("too short for a zip archive");
  size_t eocd = std::string::npos;
  for (size_t p = n - 22 + 1; p-- > 0 && n - p <= 22 + 65535;)
    if (rd.u(p, 4) == 0x06054b50u) {
      eocd = p;
      break;
    }
  if (eocd == std::string::npos) rd.corrupt("no zip directory (is it an .npz file?)");
  uint64_t count = rd.u(eocd + 10, 2), dir_offset = rd.u(eocd + 16, 4);
  if ((count == 0xFFFF || dir_offset == 0xFFFFFFFFu) && eocd >= 20 && rd.u(eocd - 20, 4) == 0x07064b50u) {
    const uint64_t z64 = rd.u(eocd - 20 + 8, 8);
    if (rd.u(z64, 4) != 0x06064b50u) rd.corrupt("broken zip64 directory");
    count = rd.u(z64 + 32, 8);
    dir_offset = rd.u(z64 + 48, 8);
  }
  std::vector<ZipEntry> out;
  size_t p = dir_offset;
  for (uint64_t i = 0; i < count; ++i) {
    if (rd.u(p, 4) != 0x02014b50u) rd.corrupt("damaged zip directory");
    ZipEntry e;
    e.method = static_cast<int>(rd.u(p + 10, 2));
    e.crc = static_cast<uint32_t>(rd.u(p + 16, 4));
    e.csize = rd.u(p + 20, 4);
    e.usize = rd.u(p + 24, 4);
    const size_t nlen = rd.u(p + 28, 2), xlen = rd.u(p + 30, 2), clen = rd.u(p + 32, 2);
    e.offset = rd.u(p + 42, 4);
    if (p + 46 + nlen > rd.size()) rd.corrupt("damaged zip directory");
    e.name = rd.str().substr(p + 46, nlen);
    apply_zip64(rd, p + 46 + nlen, xlen, e, e.usize == 0xFFFFFFFFu, e.csize == 0xFFFFFFFFu,
                e.offset == 0xFFFFFFFFu);
    out.push_back(e);
    p += 46 + nlen + xlen + clen;
  }
  return out;
}

std::string zip_read(const Bytes &rd, const ZipEntry &e, const std::string &source)
{
  const size_t h = e.offset;
  if (rd.u(h, 4) != 0x04034b50u) rd.corrupt("damaged entry '" + e.name + "'");
  const size_t data = h + 30 + rd.u(h + 26, 2) + rd.u(h + 28, 2);
  if (data + e.csize > rd.size() || data + e.csize < data) rd.corrupt("entry '" + e.name + "' is truncated");
  std::string out;
  if (e.method == 0) {
    if (e.csize != e.usize) rd.corrupt("entry '" + e.name + "' has inconsistent sizes");
    out = rd.str().substr(data, e.csize);
  } else if (e.method == 8) {
#ifdef MLFF_ACE_HAVE_ZLIB
    (void)source;
    out.resize(e.usize);
    z_stream zs;
    std::memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) rd.corrupt("cannot start zlib");
    zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(rd.str().data() + data));
    zs.avail_in = static_cast<uInt>(e.csize);
    zs.next_out = reinterpret_cast<Bytef *>(&out[0]);
    zs.avail_out = static_cast<uInt>(e.usize);
    const int rc = inflate(&zs, Z_FINISH);
    const uint64_t produced = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != e.usize) rd.corrupt("entry '" + e.name + "' does not inflate");
#else
    throw FormatError(source + ": entry '" + e.name +
                      "' is compressed (np.savez_compressed) and this build of mlff has no zlib; "
                      "re-save the active set with np.savez");
#endif
  } else {
    rd.corrupt("entry '" + e.name + "' uses zip compression method " + std::to_string(e.method) +
               " (only stored and deflated are supported)");
  }
  if (crc32_of(reinterpret_cast<const unsigned char *>(out.data()), out.size()) != e.crc)
    rd.corrupt("entry '" + e.name + "' fails its CRC check");
  return out;
}

// A 2-D float array from .npy bytes.
Matrix parse_npy(const std::string &npy, const std::string &where)
{
  auto fail = [&](const std::string &what) { throw FormatError(where + ": " + what); };
  if (npy.size() < 10 || npy.compare(0, 6, "\x93NUMPY") != 0) fail("not a .npy array");
  const int major = static_cast<unsigned char>(npy[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = static_cast<unsigned char>(npy[8]) | (static_cast<size_t>(static_cast<unsigned char>(npy[9])) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (npy.size() < 12) fail("truncated .npy header");
    hlen = 0;
    for (int i = 3; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(npy[8 + i]);
    hstart = 12;
  } else {
    fail("unsupported .npy version " + std::to_string(major));
  }
  if (hstart + hlen > npy.size()) fail("truncated .npy header");
  const std::string header = npy.substr(hstart, hlen);
  auto value_of = [&](const std::string &key) {
    const size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) fail(".npy header has no '" + key + "'");
    const size_t colon = header.find(':', k);
    if (colon == std::string::npos) fail("damaged .npy header");
    return header.substr(colon + 1);
  };
  std::string descr = value_of("descr");
  {
    const size_t q1 = descr.find('\''), q2 = descr.find('\'', q1 + 1);
    if (q1 == std::string::npos || q2 == std::string::npos) fail("damaged .npy header");
    descr = descr.substr(q1 + 1, q2 - q1 - 1);
  }
  std::string fo = value_of("fortran_order");
  const bool fortran = fo.find("True") < fo.find_first_of(",}");
  std::string shape_text = value_of("shape");
  const size_t lp = shape_text.find('('), rp = shape_text.find(')');
  if (lp == std::string::npos || rp == std::string::npos) fail("damaged .npy header");
  std::vector<long long> shape;
  {
    std::string inner = shape_text.substr(lp + 1, rp - lp - 1);
    std::replace(inner.begin(), inner.end(), ',', ' ');
    std::istringstream in(inner);
    for (long long d; in >> d;) shape.push_back(d);
  }
  if (shape.size() != 2)
    fail("expected a 2-D matrix, got an array of " + std::to_string(shape.size()) + " dimensions");
  int width = 0;
  bool big = false;
  if (descr == "<f8" || descr == "=f8") width = 8;
  else if (descr == ">f8") width = 8, big = true;
  else if (descr == "<f4" || descr == "=f4") width = 4;
  else if (descr == ">f4") width = 4, big = true;
  else fail("expected float64 values, got dtype '" + descr + "'");
  if (shape[0] < 0 || shape[1] < 0 || shape[0] > (1 << 20) || shape[1] > (1 << 20)) fail("implausible shape");
  Matrix m;
  m.rows = static_cast<int>(shape[0]);
  m.cols = static_cast<int>(shape[1]);
  const size_t count = static_cast<size_t>(m.rows) * m.cols;
  const size_t start = hstart + hlen;
  if (npy.size() - start != count * width)
    fail("holds " + std::to_string(npy.size() - start) + " bytes of data, expected " + std::to_string(count * width) +
         " for shape (" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + ")");
  m.data.resize(count);
  for (size_t i = 0; i < count; ++i) {
    unsigned char b[8];
    std::memcpy(b, npy.data() + start + i * width, width);
    if (big) std::reverse(b, b + width);
    double v;
    if (width == 8) {
      std::memcpy(&v, b, 8);
    } else {
      float f;
      std::memcpy(&f, b, 4);
      v = f;
    }
    if (fortran) {
      const size_t r = i % m.rows, c = i / m.rows;
      m.data[r * m.cols + c] = v;
    } else {
      m.data[i] = v;
    }
  }
  return m;
}

}    // namespace

ActiveSet read_active_set(const std::string &bytes, const std::string &source)
{
  Bytes rd(bytes, source);
  ActiveSet out;
  out.source = source;
  for (const ZipEntry &e : zip_directory(rd)) {
    std::string key = e.name;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    const std::string where = source + ": array '" + key + "'";
    Matrix m = parse_npy(zip_read(rd, e, source), where);
    for (double v : m.data)
      if (!std::isfinite(v)) throw FormatError(where + ": contains a value that is not a finite number");
    if (!out.inverse.emplace(key, std::move(m)).second)
      throw FormatError(source + ": the array '" + key + "' appears twice");
  }
  if (out.inverse.empty()) throw FormatError(source + ": the active-set file holds no arrays");
  return out;
}

ActiveSet read_active_set_file(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open the active-set file '" + path + "': " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read the active-set file '" + path + "'");
  return read_active_set(s.str(), path);
}

// ---------------------------------------------------------------------------------------

Projector::Projector(const BBasis &basis, bool nonlinear) : nonlinear_(nonlinear)
{
  projection_ = std::make_unique<Evaluator>(basis.projection);
  // dF/drho only matters for the non-linear kind
  if (nonlinear_) energy_model_ = basis.energy;
  for (const Embedding &e : basis.energy.embeddings) ndensity_.push_back(e.ndensity);
}

Evaluator &Projector::energy()
{
  if (!nonlinear_) throw std::logic_error("the linear extrapolation grade needs no energy model");
  if (!energy_) energy_ = std::make_unique<Evaluator>(energy_model_);
  return *energy_;
}

const Model &Projector::projection_model() const { return projection_->model(); }
const Model &Projector::energy_model() const
{
  if (!nonlinear_) throw std::logic_error("the linear extrapolation grade needs no energy model");
  return energy_model_;
}

int Projector::num_functions(int mu) const
{
  return static_cast<int>(projection_->model().functions.at(mu).size());
}

int Projector::size(int mu) const { return num_functions(mu) * (nonlinear_ ? ndensity_.at(mu) : 1); }

void Projector::atom_vector(int mu_i, int jnum, const int *mu_j, const double *rij, std::vector<double> *x,
                            const double *dE_drho)
{
  drij_.resize(3 * static_cast<size_t>(std::max(jnum, 1)));
  projection_->compute_atom(mu_i, jnum, mu_j, rij, drij_.data(), &scratch_);
  if (!nonlinear_) {
    x->assign(scratch_.projections.begin(), scratch_.projections.end());
    return;
  }
  const std::vector<double> proj = scratch_.projections;
  std::vector<double> own;
  if (!dE_drho) {
    energy().compute_atom(mu_i, jnum, mu_j, rij, drij_.data(), &scratch_);
    own = scratch_.dE_drho;
    dE_drho = own.data();
  }
  const int nd = ndensity_.at(mu_i), nf = static_cast<int>(proj.size());
  x->resize(static_cast<size_t>(nd) * nf);
  for (int p = 0; p < nd; ++p)
    for (int k = 0; k < nf; ++k) (*x)[static_cast<size_t>(p) * nf + k] = dE_drho[p] * proj[k];
}

void Projector::compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges,
                        const int64_t *centres, const int64_t *neighbours, const double *vectors,
                        std::vector<std::vector<double>> *x)
{
  std::vector<double> energies(n_local), grad(3 * static_cast<size_t>(n_edges));
  std::vector<AtomResult> proj, dens;
  projection_->compute(n_nodes, n_local, species, n_edges, centres, neighbours, vectors, energies.data(),
                       grad.data(), &proj);
  if (nonlinear_)
    energy().compute(n_nodes, n_local, species, n_edges, centres, neighbours, vectors, energies.data(), grad.data(),
                     &dens);
  x->assign(n_local, {});
  for (int64_t i = 0; i < n_local; ++i) {
    std::vector<double> &xi = (*x)[i];
    const std::vector<double> &b = proj[i].projections;
    if (!nonlinear_) {
      xi = b;
      continue;
    }
    const std::vector<double> &d = dens[i].dE_drho;
    const size_t nf = b.size();
    xi.resize(d.size() * nf);
    for (size_t p = 0; p < d.size(); ++p)
      for (size_t k = 0; k < nf; ++k) xi[p * nf + k] = d[p] * b[k];
  }
}

// ---------------------------------------------------------------------------------------

namespace {

bool decide_nonlinear(const BBasis &basis, const ActiveSet &as, GradeKind kind)
{
  const Model &m = basis.energy;
  const std::string &src = as.source;
  for (const auto &kv : as.inverse)
    if (std::find(m.elements.begin(), m.elements.end(), kv.first) == m.elements.end()) {
      std::string els;
      for (const auto &e : m.elements) els += (els.empty() ? "" : ", ") + e;
      throw FormatError(src + ": has a matrix for '" + kv.first + "', which is not an element of the potential " +
                        basis.source + " (" + els + ")");
    }
  int votes_linear = 0, votes_nonlinear = 0;
  for (int mu = 0; mu < m.nelements(); ++mu) {
    const std::string &el = m.elements[mu];
    auto it = as.inverse.find(el);
    if (it == as.inverse.end())
      throw FormatError(src + ": has no matrix for element '" + el + "' of the potential " + basis.source);
    const Matrix &a = it->second;
    if (a.rows != a.cols)
      throw FormatError(src + ": the matrix of '" + el + "' has shape (" + std::to_string(a.rows) + ", " +
                        std::to_string(a.cols) + "); an inverted active set is square");
    const int nf = basis.num_functions(mu), nd = m.embeddings[mu].ndensity;
    const bool fits_linear = a.rows == nf, fits_nonlinear = a.rows == nf * nd;
    if (kind == GradeKind::Linear && !fits_linear)
      throw FormatError(src + ": the matrix of '" + el + "' is " + std::to_string(a.rows) + " x " +
                        std::to_string(a.rows) + "; the linear grade needs " + std::to_string(nf) +
                        " (the number of B functions of " + el + ")");
    if (kind == GradeKind::NonLinear && !fits_nonlinear)
      throw FormatError(src + ": the matrix of '" + el + "' is " + std::to_string(a.rows) + " x " +
                        std::to_string(a.rows) + "; the non-linear grade needs " + std::to_string(nf * nd) +
                        " (B functions x ndensity of " + el + ")");
    if (!fits_linear && !fits_nonlinear)
      throw FormatError(src + ": the matrix of '" + el + "' is " + std::to_string(a.rows) + " x " +
                        std::to_string(a.rows) + ", expected " + std::to_string(nf) + " (linear: the B functions of " +
                        el + ") or " + std::to_string(nf * nd) +
                        " (non-linear: x ndensity); is it the active set of another potential?");
    if (fits_linear) ++votes_linear;
    else ++votes_nonlinear;
  }
  if (kind == GradeKind::Linear) return false;
  if (kind == GradeKind::NonLinear) return true;
  if (votes_linear && votes_nonlinear)
    throw FormatError(src + ": some elements' matrices fit the linear grade and others the non-linear one");
  return votes_nonlinear > 0;
}

}    // namespace

GradeEvaluator::GradeEvaluator(const BBasis &basis, const ActiveSet &active_set, GradeKind kind)
    : projector_(basis, decide_nonlinear(basis, active_set, kind))
{
  for (const std::string &el : basis.energy.elements) inverse_.push_back(active_set.inverse.at(el));
}

double GradeEvaluator::grade(int mu_i, const std::vector<double> &x) const
{
  const Matrix &a = inverse_.at(mu_i);
  if (static_cast<int>(x.size()) != a.rows)
    throw std::logic_error("extrapolation grade: vector of " + std::to_string(x.size()) + " for a " +
                           std::to_string(a.rows) + "-row matrix");
  y_.assign(a.cols, 0.0);
  for (int k = 0; k < a.rows; ++k) {
    const double xk = x[k];
    if (xk == 0.0) continue;
    const double *row = a.data.data() + static_cast<size_t>(k) * a.cols;
    for (int i = 0; i < a.cols; ++i) y_[i] += xk * row[i];
  }
  double g = 0.0;
  for (double v : y_) g = std::max(g, std::fabs(v));
  return g;
}

double GradeEvaluator::grade_atom(int mu_i, int jnum, const int *mu_j, const double *rij, const double *dE_drho)
{
  projector_.atom_vector(mu_i, jnum, mu_j, rij, &x_, dE_drho);
  return grade(mu_i, x_);
}

void GradeEvaluator::compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges,
                             const int64_t *centres, const int64_t *neighbours, const double *vectors, double *gamma)
{
  // Group the edges by centre and go through grade_atom, the per-atom path the LAMMPS
  // plugin uses, so that Python exercises it too.
  std::vector<int64_t> start(n_local + 1, 0);
  for (int64_t e = 0; e < n_edges; ++e)
    if (centres[e] >= 0 && centres[e] < n_local) ++start[centres[e] + 1];
  for (int64_t i = 0; i < n_local; ++i) start[i + 1] += start[i];
  std::vector<int64_t> order(start[n_local]);
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t e = 0; e < n_edges; ++e)
    if (centres[e] >= 0 && centres[e] < n_local) order[fill[centres[e]]++] = e;
  std::vector<int> mu_j;
  std::vector<double> rij;
  for (int64_t i = 0; i < n_local; ++i) {
    const int64_t b = start[i], n = start[i + 1] - b;
    mu_j.resize(n);
    rij.resize(3 * n);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t e = order[b + k], j = neighbours[e];
      if (j < 0 || j >= n_nodes) throw std::invalid_argument("edge to a node that does not exist");
      mu_j[k] = species[j];
      for (int c = 0; c < 3; ++c) rij[3 * k + c] = vectors[3 * e + c];
    }
    gamma[i] = grade_atom(species[i], static_cast<int>(n), mu_j.data(), rij.data());
  }
}

}    // namespace mlff_ace
