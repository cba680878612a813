#include "common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

namespace nexus::metrics {
namespace {

TEST(MetricsTest, ExpositionParsesBackWithLabelsAndHistograms) {
  Registry r;
  auto& ops = r.CounterFamily("t_ops_total", "Ops.", {"op", "path"});
  ops.Get({"read", "a\"b\\c\nd"}).Inc(3);
  ops.Get({"write", "x"}).Inc();
  r.GaugeFamily("t_gauge", "A gauge.").Get().Set(-7);
  auto& h = r.HistogramFamily("t_latency_seconds", "Latency.", {"op"}).Get({"read"});
  h.ObserveNanos(500);              // <= 1 µs
  h.ObserveNanos(3'000);            // (2, 4] µs
  h.ObserveNanos(2'000'000);        // ~2 ms
  h.ObserveNanos(100'000'000'000);  // 100 s: +Inf
  uint64_t id = r.AddCollector([](Writer& w) {
    w.Header("t_collected", "From a callback.", Type::kGauge);
    w.Sample("t_collected", {{"cache", "memory"}}, 42);
  });
  std::string text = r.Expose();
  auto parsed = ParseText(text);
  ASSERT_TRUE(parsed) << parsed.error().ToString() << "\n" << text;
  EXPECT_EQ(SumOf(*parsed, "t_ops_total", {{"op", "read"}, {"path", "a\"b\\c\nd"}}), 3);
  EXPECT_EQ(SumOf(*parsed, "t_ops_total"), 4);
  EXPECT_EQ(SumOf(*parsed, "t_gauge"), -7);
  EXPECT_EQ(SumOf(*parsed, "t_collected", {{"cache", "memory"}}), 42);
  EXPECT_EQ(SumOf(*parsed, "t_latency_seconds_count"), 4);
  EXPECT_NEAR(SumOf(*parsed, "t_latency_seconds_sum"), 100.0020035, 1e-6);
  Buckets b = BucketsOf(*parsed, "t_latency_seconds", {{"op", "read"}});
  ASSERT_EQ(b.size(), static_cast<size_t>(Histogram::kBuckets));
  EXPECT_EQ(b[0].second, 1);  // le=1e-06
  EXPECT_EQ(b[2].second, 2);  // le=4e-06
  EXPECT_EQ(b.back().second, 4);
  EXPECT_TRUE(std::isinf(b.back().first));
  EXPECT_EQ(text.find("# TYPE t_latency_seconds histogram") != std::string::npos, true);
  r.RemoveCollector(id);
  EXPECT_EQ(r.Expose().find("t_collected"), std::string::npos);
}

TEST(MetricsTest, QuantilesInterpolateWithinBuckets) {
  Registry r;
  auto& h = r.HistogramFamily("q_seconds", "Q.").Get();
  for (int i = 0; i < 99; ++i) h.ObserveNanos(3'000);  // (2, 4] µs
  h.ObserveNanos(1'000'000);                           // (512, 1024] µs
  auto parsed = ParseText(r.Expose());
  ASSERT_TRUE(parsed);
  Buckets b = BucketsOf(*parsed, "q_seconds");
  double p50 = Quantile(b, 0.5);
  EXPECT_GT(p50, 2e-6);
  EXPECT_LE(p50, 4e-6);
  double p999 = Quantile(b, 0.999);
  EXPECT_GT(p999, 512e-6);
  EXPECT_LE(p999, 1024e-6);
  EXPECT_EQ(Quantile(Subtract(b, b), 0.5), 0);
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  auto& c = r.CounterFamily("c_total", "C.").Get();
  auto& h = r.HistogramFamily("h_seconds", "H.").Get();
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        c.Inc();
        h.ObserveNanos(i);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.Value(), 400000u);
  EXPECT_EQ(h.Count(), 400000u);
}

TEST(MetricsTest, MalformedTextIsAnError) {
  EXPECT_FALSE(ParseText("a{b=\"c} 1\n"));
  EXPECT_FALSE(ParseText("a 1x\n"));
  EXPECT_FALSE(ParseText("a{b} 1\n"));
  auto ok = ParseText("# HELP a x\n\na 1 1700000000\n");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->size(), 1u);
}

}  // namespace
}  // namespace nexus::metrics
