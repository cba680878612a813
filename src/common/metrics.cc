#include "common/metrics.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "common/clock.h"

namespace nexus::metrics {
namespace {

void AppendEscaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
}

void AppendValue(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.9g", v);
  }
  out += buf;
}

Labels Zip(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  Labels l;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i)
    l.emplace_back(names[i], values[i]);
  return l;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool Matches(const ParsedSample& s, const std::map<std::string, std::string>& match) {
  for (const auto& [k, v] : match) {
    auto it = s.labels.find(k);
    if (it == s.labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

double Histogram::UpperBound(int i) {
  if (i >= kBuckets - 1) return std::numeric_limits<double>::infinity();
  return 1e-6 * static_cast<double>(1ULL << i);
}

void Histogram::ObserveNanos(int64_t ns) {
  uint64_t us = ns <= 0 ? 0 : static_cast<uint64_t>(ns + 999) / 1000;  // round up to whole µs
  // Bucket i holds (2^(i-1), 2^i] µs; bucket 0 holds <= 1 µs.
  int i = us <= 1 ? 0 : std::bit_width(us - 1);
  if (i > kBuckets - 1) i = kBuckets - 1;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns > 0 ? static_cast<uint64_t>(ns) : 0, std::memory_order_relaxed);
}

namespace {
thread_local const char* tl_current_op = nullptr;
}  // namespace

const char* CurrentOp() { return tl_current_op ? tl_current_op : "other"; }
CurrentOpScope::CurrentOpScope(const char* op) : prev_(tl_current_op) { tl_current_op = op; }
CurrentOpScope::~CurrentOpScope() { tl_current_op = prev_; }

ScopedTimer::ScopedTimer(Histogram& h) : h_(h), start_(MonoNanos()) {}
ScopedTimer::~ScopedTimer() { h_.ObserveNanos(MonoNanos() - start_); }

void Writer::Header(std::string_view name, std::string_view help, Type type) {
  if (std::find(seen_.begin(), seen_.end(), name) != seen_.end()) return;
  seen_.emplace_back(name);
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += TypeName(type);
  out_ += '\n';
}

void Writer::Sample(std::string_view name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) out_ += ',';
      out_ += labels[i].first;
      out_ += "=\"";
      AppendEscaped(out_, labels[i].second);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  AppendValue(out_, value);
  out_ += '\n';
}

template <typename T>
T& Family<T>::Get(const std::vector<std::string>& values) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = metrics_[values];
  if (!slot) slot = std::make_unique<T>();
  return *slot;
}

template <>
void Family<Counter>::Write(Writer& w) const {
  w.Header(name, help, type);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, c] : metrics_) {
    w.Sample(name, Zip(label_names, values), static_cast<double>(c->Value()));
  }
}

template <>
void Family<Gauge>::Write(Writer& w) const {
  w.Header(name, help, type);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, g] : metrics_) {
    w.Sample(name, Zip(label_names, values), static_cast<double>(g->Value()));
  }
}

template <>
void Family<Histogram>::Write(Writer& w) const {
  w.Header(name, help, type);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, h] : metrics_) {
    Labels labels = Zip(label_names, values);
    uint64_t cumulative = 0;
    // Buckets are read one by one while others observe: the count is taken from them so that
    // the +Inf bucket always equals _count within one exposition.
    for (int i = 0; i < Histogram::kBuckets; ++i) {
      cumulative += h->Bucket(i);
      Labels bl = labels;
      char le[32];
      if (i == Histogram::kBuckets - 1) {
        std::snprintf(le, sizeof(le), "+Inf");
      } else {
        std::snprintf(le, sizeof(le), "%.6g", Histogram::UpperBound(i));
      }
      bl.emplace_back("le", le);
      w.Sample(name + "_bucket", bl, static_cast<double>(cumulative));
    }
    w.Sample(name + "_sum", labels, h->Sum());
    w.Sample(name + "_count", labels, static_cast<double>(cumulative));
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Registry& Registry::Default() {
  static Registry* r = new Registry();  // never destroyed: metrics may be touched at exit
  return *r;
}

template <typename T>
Family<T>& Registry::Add(std::string name, std::string help, std::vector<std::string> label_names,
                         Type type) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& f : families_) {
    if (f->name == name) return static_cast<Family<T>&>(*f);
  }
  auto f = std::make_unique<Family<T>>();
  f->name = std::move(name);
  f->help = std::move(help);
  f->label_names = std::move(label_names);
  f->type = type;
  Family<T>& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Counter>& Registry::CounterFamily(std::string name, std::string help,
                                         std::vector<std::string> label_names) {
  return Add<Counter>(std::move(name), std::move(help), std::move(label_names), Type::kCounter);
}

Family<Gauge>& Registry::GaugeFamily(std::string name, std::string help,
                                     std::vector<std::string> label_names) {
  return Add<Gauge>(std::move(name), std::move(help), std::move(label_names), Type::kGauge);
}

Family<Histogram>& Registry::HistogramFamily(std::string name, std::string help,
                                             std::vector<std::string> label_names) {
  return Add<Histogram>(std::move(name), std::move(help), std::move(label_names), Type::kHistogram);
}

uint64_t Registry::AddCollector(std::function<void(Writer&)> collect) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t id = next_collector_++;
  collectors_.emplace(id, std::move(collect));
  return id;
}

void Registry::RemoveCollector(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.erase(id);
}

std::string Registry::Expose() const {
  Writer w;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& f : families_) f->Write(w);
  for (const auto& [id, collect] : collectors_) collect(w);
  return w.Take();
}

Result<std::vector<ParsedSample>> ParseText(std::string_view text) {
  std::vector<ParsedSample> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](const char* why) {
      return Err(EINVAL, "metrics line " + std::to_string(line_no) + " (" + std::string(line) +
                             "): " + why);
    };
    ParsedSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = std::string(line.substr(0, i));
    if (s.name.empty()) return bad("no metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          return bad("label without =\"value\"");
        }
        std::string key(line.substr(i, eq - i));
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value.push_back(line[j] == 'n' ? '\n' : line[j]);
          } else {
            value.push_back(line[j]);
          }
        }
        if (j >= line.size()) return bad("unterminated label value");
        s.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return bad("unterminated label set");
      ++i;
    }
    while (i < line.size() && line[i] == ' ') ++i;
    std::string_view v = line.substr(i);
    size_t sp = v.find(' ');  // an optional timestamp follows
    v = v.substr(0, sp);
    if (v == "+Inf") {
      s.value = std::numeric_limits<double>::infinity();
    } else if (v == "-Inf") {
      s.value = -std::numeric_limits<double>::infinity();
    } else {
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), s.value);
      if (ec != std::errc() || p != v.data() + v.size()) return bad("value is not a number");
    }
    out.push_back(std::move(s));
  }
  return out;
}

double SumOf(const std::vector<ParsedSample>& samples, std::string_view name,
             const std::map<std::string, std::string>& match) {
  double sum = 0;
  for (const auto& s : samples) {
    if (s.name == name && Matches(s, match)) sum += s.value;
  }
  return sum;
}

Buckets BucketsOf(const std::vector<ParsedSample>& samples, std::string_view name,
                  const std::map<std::string, std::string>& match) {
  std::map<double, double> by_le;
  std::string bucket_name = std::string(name) + "_bucket";
  for (const auto& s : samples) {
    if (s.name != bucket_name || !Matches(s, match)) continue;
    auto it = s.labels.find("le");
    if (it == s.labels.end()) continue;
    double le = it->second == "+Inf" ? std::numeric_limits<double>::infinity()
                                     : std::strtod(it->second.c_str(), nullptr);
    by_le[le] += s.value;
  }
  return Buckets(by_le.begin(), by_le.end());
}

Buckets Subtract(const Buckets& a, const Buckets& b) {
  Buckets out = a;
  for (size_t i = 0; i < out.size() && i < b.size(); ++i) {
    out[i].second = std::max(0.0, a[i].second - b[i].second);
  }
  return out;
}

double Quantile(const Buckets& buckets, double q) {
  if (buckets.empty()) return 0;
  double total = buckets.back().second;
  if (total <= 0) return 0;
  double rank = q * total;
  double prev_le = 0, prev_count = 0;
  for (const auto& [le, count] : buckets) {
    if (count >= rank) {
      if (std::isinf(le)) return prev_le;
      double in_bucket = count - prev_count;
      double frac = in_bucket > 0 ? (rank - prev_count) / in_bucket : 1;
      return prev_le + (le - prev_le) * frac;
    }
    prev_le = le;
    prev_count = count;
  }
  return prev_le;
}

}  // namespace nexus::metrics
