// The S3 backend's own tests: Signature V4 against AWS's published examples, URL forms, XML
// answers, and against a real s3rver: credentials, bucket creation, key prefixes, virtual-hosted
// addressing, retries on timeouts and their bound.
#include "object/s3_store.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "object/object_store.h"
#include "object/s3_server.h"
#include "object/s3_sigv4.h"

namespace nexus::object {
namespace {

using testing::S3Server;

// The "GET Object" example of the Amazon S3 API reference (Signature Calculations for the
// Authorization Header: Transferring Payload in a Single Chunk): the first 10 bytes of
// examplebucket/test.txt, signed with the documentation's example credentials.
TEST(SigV4Test, S3DocumentationGetObjectExample) {
  s3::SigV4Request req;
  req.method = "GET";
  req.canonical_uri = "/test.txt";
  const std::string empty_hash = s3::Sha256Hex("");
  ASSERT_EQ(empty_hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  req.headers = {{"host", "examplebucket.s3.amazonaws.com"},
                 {"range", "bytes=0-9"},
                 {"x-amz-content-sha256", empty_hash},
                 {"x-amz-date", "20130524T000000Z"}};
  req.payload_hash = empty_hash;
  s3::SigningKeys keys{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  auto r = s3::SignV4(req, keys, "us-east-1", "s3", "20130524T000000Z");
  EXPECT_EQ(r.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(r.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(r.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(r.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

// The AWS SigV4 test suite's "get-vanilla-query-order-key-case": query parameters are sorted.
TEST(SigV4Test, TestSuiteGetVanillaQueryOrderKeyCase) {
  s3::SigV4Request req;
  req.method = "GET";
  req.canonical_uri = "/";
  req.query = {{"Param2", "value2"}, {"Param1", "value1"}};
  req.headers = {{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}};
  req.payload_hash = s3::Sha256Hex("");
  s3::SigningKeys keys{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
  auto r = s3::SignV4(req, keys, "us-east-1", "service", "20150830T123600Z");
  EXPECT_EQ(r.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST(SigV4Test, UriEncoding) {
  EXPECT_EQ(s3::UriEncode("a b/c~d_e-f.g", true), "a%20b/c~d_e-f.g");
  EXPECT_EQ(s3::UriEncode("a/b+c=", false), "a%2Fb%2Bc%3D");
  EXPECT_EQ(s3::CanonicalQuery({{"uploads", ""}, {"b", "x y"}, {"a", "2"}}),
            "a=2&b=x%20y&uploads=");
}

TEST(S3EndpointTest, UrlForms) {
  StoreOptions o;
  o.access_key = "AK";
  o.secret_key = "SK";
  auto e = s3::ResolveEndpoint("http://127.0.0.1:9000/bucket-1/vol/x", o);
  ASSERT_TRUE(e) << e.error().ToString();
  EXPECT_EQ(e->scheme, "http");
  EXPECT_EQ(e->host, "127.0.0.1:9000");
  EXPECT_EQ(e->bucket, "bucket-1");
  EXPECT_EQ(e->prefix, "vol/x/");
  EXPECT_FALSE(e->virtual_hosted);
  EXPECT_EQ(e->Path("a b/c"), "/bucket-1/vol/x/a%20b/c");
  EXPECT_EQ(e->Display(), "http://127.0.0.1:9000/bucket-1/vol/x/");

  e = s3::ResolveEndpoint("https://my-bucket.s3.eu-west-3.amazonaws.com/pre", o);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->virtual_hosted);
  EXPECT_EQ(e->bucket, "my-bucket");
  EXPECT_EQ(e->region, "eu-west-3");
  EXPECT_EQ(e->host, "my-bucket.s3.eu-west-3.amazonaws.com");
  EXPECT_EQ(e->Path("k"), "/pre/k");
  EXPECT_EQ(e->BucketPath(), "/");

  e = s3::ResolveEndpoint("s3://data-bucket?region=ap-south-1", o);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "data-bucket.s3.ap-south-1.amazonaws.com");
  EXPECT_EQ(e->scheme, "https");
  EXPECT_TRUE(e->virtual_hosted);

  e = s3::ResolveEndpoint("s3://dotted.bucket/p", o);  // TLS wildcards do not cover dots
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->virtual_hosted);
  EXPECT_EQ(e->Path("k"), "/dotted.bucket/p/k");

  e = s3::ResolveEndpoint("s3://minio.local:9000/b12", o);  // s3:// with a port: an endpoint
  ASSERT_TRUE(e);
  EXPECT_EQ(e->scheme, "https");
  EXPECT_EQ(e->host, "minio.local:9000");
  EXPECT_EQ(e->bucket, "b12");

  e = s3::ResolveEndpoint("http://s3.localhost:9000/b12?style=virtual", o);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "b12.s3.localhost:9000");
  EXPECT_EQ(e->Path("k"), "/k");

  // Credentials: options, then the URL, then the environment.
  e = s3::ResolveEndpoint("http://user:pass@h:1/bkt", {});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->keys.access_key, "user");
  EXPECT_EQ(e->keys.secret_key, "pass");
  EXPECT_EQ(e->Display().find("pass"), std::string::npos);
  setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
  e = s3::ResolveEndpoint("http://h:1/bkt", {});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->keys.access_key, "ENVKEY");
  EXPECT_EQ(e->keys.secret_key, "ENVSECRET");
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");

  EXPECT_FALSE(s3::ResolveEndpoint("http://h:1/bkt", o)->sign_payload);
  EXPECT_TRUE(s3::ResolveEndpoint("http://h:1/bkt?payload=signed", o)->sign_payload);
  EXPECT_FALSE(s3::ResolveEndpoint("http://h:1/bkt?payload=unsigned", o)->sign_payload);

  for (const char* bad :
       {"http://h:1/", "http://h:1/Bad_Bucket!", "s3://b", "http://h/bkt?x=1",
        "http://h/bkt?style=diagonal", "http://h/bkt/a/../b", "http://h/bkt?payload=maybe"}) {
    auto r = s3::ResolveEndpoint(bad, o);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code(), EINVAL) << bad;
    }
  }
  StoreOptions half;
  half.access_key = "only";
  EXPECT_EQ(s3::ResolveEndpoint("http://h/bkt", half).error().code(), EINVAL);
}

TEST(S3XmlTest, ErrorsListingsAndTimes) {
  auto e = s3::ParseError(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
      "<Message>The specified key does not exist.</Message><Key>a</Key></Error>");
  EXPECT_EQ(e.code, "NoSuchKey");
  EXPECT_EQ(e.message, "The specified key does not exist.");
  EXPECT_TRUE(s3::ParseError("not xml").code.empty());
  EXPECT_TRUE(s3::ParseError("").code.empty());

  auto page = s3::ParseListV2(
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
      "<IsTruncated>true</IsTruncated><NextContinuationToken>tok==</NextContinuationToken>"
      "<Contents><Key>a/1</Key><LastModified>2009-10-12T17:50:30.250Z</LastModified>"
      "<Size>434234</Size></Contents><Contents><Key>a/2 &amp; x</Key><Size>0</Size></Contents>"
      "</ListBucketResult>");
  ASSERT_TRUE(page) << page.error().ToString();
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->continuation, "tok==");
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "a/1");
  EXPECT_EQ(page->objects[0].size, 434234u);
  EXPECT_EQ(page->objects[0].mtime, 1255369830250000000LL);
  EXPECT_EQ(page->objects[1].key, "a/2 & x");
  EXPECT_FALSE(s3::ParseListV2("<Error><Code>x</Code></Error>"));
  EXPECT_EQ(s3::ParseTime("Mon, 12 Oct 2009 17:50:30 GMT"), 1255369830000000000LL);
  EXPECT_EQ(*s3::ParseUploadId("<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                               "<UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>"),
            "VXBsb2FkIElE");
}

class S3ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    server_ = S3Server::Shared(&error);
    if (!server_) GTEST_SKIP() << error;
    options_.access_key = S3Server::kAccessKey;
    options_.secret_key = S3Server::kSecretKey;
  }
  std::string Prefix() const {
    return "s3t" + std::to_string(getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  S3Server* server_ = nullptr;
  StoreOptions options_;
};

TEST_F(S3ServerTest, UnknownAccessKeyIsRefusedAndSecretsNeverShown) {
  // s3rver checks the access key but not V4 signatures themselves (the SigV4Test vectors do).
  StoreOptions o = options_;
  o.access_key = "NOT-AN-ACCOUNT";
  o.secret_key = "not-the-secret-k3y";
  auto s = ObjectStore::Open(server_->BucketUrl(Prefix()), o);
  // Opening checks the bucket with a HEAD, which carries no error body.
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), EACCES) << s.error().ToString();
  EXPECT_EQ(s.error().ToString().find("not-the-secret-k3y"), std::string::npos);

  auto good = ObjectStore::Open(server_->BucketUrl(Prefix()), options_);
  ASSERT_TRUE(good) << good.error().ToString();
  EXPECT_EQ((*good)->Name(), server_->BucketUrl(Prefix()) + "/");
  EXPECT_EQ((*good)->Name().find(S3Server::kSecretKey), std::string::npos);
}

TEST_F(S3ServerTest, MissingBucketIsCreatedOnlyWhenAsked) {
  std::string url = server_->Endpoint() + "/fresh-" + std::to_string(getpid());
  auto s = ObjectStore::Open(url, options_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOENT);
  EXPECT_NE(s.error().message().find("does not exist"), std::string::npos) << s.error().ToString();
  StoreOptions o = options_;
  o.create_bucket = true;
  s = ObjectStore::Open(url, o);
  ASSERT_TRUE(s) << s.error().ToString();
  ASSERT_TRUE((*s)->Put("k", "v").ok());
  EXPECT_EQ(*(*s)->Get("k"), "v");
  EXPECT_TRUE(ObjectStore::Open(url, o));  // already there: fine
}

TEST_F(S3ServerTest, PrefixesIsolateStoresInOneBucket) {
  auto a = ObjectStore::Open(server_->BucketUrl(Prefix() + "/a"), options_);
  auto b = ObjectStore::Open(server_->BucketUrl(Prefix() + "/b"), options_);
  auto all = ObjectStore::Open(server_->BucketUrl(Prefix()), options_);
  ASSERT_TRUE(a && b && all);
  ASSERT_TRUE((*a)->Put("x/1", "a1").ok());
  ASSERT_TRUE((*b)->Put("x/1", "b1").ok());
  EXPECT_EQ(*(*a)->Get("x/1"), "a1");
  EXPECT_EQ(*(*b)->Get("x/1"), "b1");
  auto la = (*a)->List("", "", 0);
  ASSERT_TRUE(la);
  ASSERT_EQ(la->objects.size(), 1u);
  EXPECT_EQ(la->objects[0].key, "x/1");
  EXPECT_EQ((*all)->List("", "", 0)->objects.size(), 2u);
  EXPECT_EQ(*(*all)->Get("b/x/1"), "b1");
}

TEST_F(S3ServerTest, VirtualHostedAddressing) {
  // s3rver serves BUCKET.s3.localhost (its --service-endpoint); *.localhost is loopback.
  std::string url = "http://s3.localhost:" + std::to_string(server_->port()) + "/" +
                    S3Server::kBucket + "/" + Prefix() + "?style=virtual";
  auto s = ObjectStore::Open(url, options_);
  ASSERT_TRUE(s) << s.error().ToString();
  ASSERT_TRUE((*s)->Put("dir/obj", "hello").ok());
  EXPECT_EQ(*(*s)->Get("dir/obj", 1, 3), "ell");
  auto path = ObjectStore::Open(server_->BucketUrl(Prefix()), options_);
  ASSERT_TRUE(path);
  EXPECT_EQ(*(*path)->Get("dir/obj"), "hello");  // the same object, addressed by path
  EXPECT_EQ((*s)->List("", "", 0)->objects.size(), 1u);
}

TEST_F(S3ServerTest, SessionTokenFromEnvironmentIsSent) {
  // s3rver ignores tokens, but they are signed: a request carrying one must still verify.
  setenv("AWS_ACCESS_KEY_ID", S3Server::kAccessKey, 1);
  setenv("AWS_SECRET_ACCESS_KEY", S3Server::kSecretKey, 1);
  setenv("AWS_SESSION_TOKEN", "token/with+chars=", 1);
  auto s = ObjectStore::Open(server_->BucketUrl(Prefix()));
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SESSION_TOKEN");
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_TRUE((*s)->Put("k", "v").ok());
}

TEST_F(S3ServerTest, TimeoutsAreRetriedUntilTheServerAnswers) {
  StoreOptions o = options_;
  o.request_timeout_ms = 300;
  o.max_tries = 10;  // backoff 100, 200, 400, 800 ms... : well past the pause below
  auto s = ObjectStore::Open(server_->BucketUrl(Prefix()), o);
  ASSERT_TRUE(s) << s.error().ToString();
  ASSERT_TRUE((*s)->Put("k", "before").ok());
  server_->Pause();
  std::thread resume([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    server_->Resume();
  });
  auto t0 = std::chrono::steady_clock::now();
  Status put = (*s)->Put("k", "after");
  auto waited = std::chrono::steady_clock::now() - t0;
  resume.join();
  EXPECT_TRUE(put.ok()) << put.ToString();
  EXPECT_GE(waited, std::chrono::milliseconds(1000));
  EXPECT_EQ(*(*s)->Get("k"), "after");
}

TEST_F(S3ServerTest, RetriesAreBoundedThenEio) {
  StoreOptions o = options_;
  o.request_timeout_ms = 200;
  o.max_tries = 3;
  auto s = ObjectStore::Open(server_->BucketUrl(Prefix()), o);
  ASSERT_TRUE(s) << s.error().ToString();
  server_->Pause();
  auto t0 = std::chrono::steady_clock::now();
  auto got = (*s)->Get("some/key");
  auto waited = std::chrono::steady_clock::now() - t0;
  server_->Resume();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), EIO);
  EXPECT_NE(got.error().message().find("get some/key"), std::string::npos);
  EXPECT_NE(got.error().message().find("after 3 tries"), std::string::npos)
      << got.error().ToString();
  EXPECT_LT(waited, std::chrono::seconds(5));

  // Nothing listens: connection refused, retried, then EIO.
  auto closed = ObjectStore::Open("http://127.0.0.1:1/" + std::string(S3Server::kBucket), o);
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error().code(), EIO) << closed.error().ToString();
}

TEST_F(S3ServerTest, MultipartPutOfOddSizes) {
  StoreOptions o = options_;
  o.multipart_threshold = 5 << 20;
  o.multipart_part_size = 5 << 20;
  auto s = ObjectStore::Open(server_->BucketUrl(Prefix()), o);
  ASSERT_TRUE(s);
  std::string data((11 << 20) + 7, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + i / 4096);
  ASSERT_TRUE((*s)->Put("big", data).ok());
  EXPECT_EQ((*s)->Head("big")->size, data.size());
  EXPECT_EQ(*(*s)->Get("big"), data);
  EXPECT_EQ(*(*s)->Get("big", (5 << 20) - 3, 10), data.substr((5 << 20) - 3, 10));
  // The store holds exactly one object: no part or upload shows up as a key.
  EXPECT_EQ((*s)->List("", "", 0)->objects.size(), 1u);
}

// Records the header block of every request it is sent and answers each with a 200: shows what
// the client puts on the wire, which a real server does not report. A GET gets `get_body` whole,
// whatever Range it asks for (as a server that ignores Range answers).
class RequestRecorder {
 public:
  explicit RequestRecorder(std::string get_body = {}) : get_body_(std::move(get_body)) {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        listen(listener_, 8) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RequestRecorder() {
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> Requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void Serve() {
    while (true) {
      int c = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::string in;
      char buf[65536];
      while (true) {
        size_t end = in.find("\r\n\r\n");
        if (end == std::string::npos) {
          ssize_t n = read(c, buf, sizeof buf);
          if (n <= 0) break;
          in.append(buf, static_cast<size_t>(n));
          continue;
        }
        std::string head = in.substr(0, end + 2);
        size_t body = 0;
        std::string lower = head;
        for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (size_t at = lower.find("content-length:"); at != std::string::npos) {
          body = std::strtoull(lower.c_str() + at + 15, nullptr, 10);
        }
        while (in.size() < end + 4 + body) {
          ssize_t n = read(c, buf, sizeof buf);
          if (n <= 0) break;
          in.append(buf, static_cast<size_t>(n));
        }
        in.erase(0, std::min(in.size(), end + 4 + body));
        {
          std::lock_guard lock(mu_);
          requests_.push_back(lower);
        }
        std::string body_out;
        if (lower.rfind("get ", 0) == 0) body_out = get_body_;
        if (lower.rfind("post ", 0) == 0 && lower.find("?uploads") != std::string::npos) {
          body_out =
              "<InitiateMultipartUploadResult><UploadId>u1</UploadId>"
              "</InitiateMultipartUploadResult>";
        }
        std::string reply =
            "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: " + std::to_string(body_out.size()) +
            "\r\n\r\n" + body_out;
        if (write(c, reply.data(), reply.size()) < 0) break;
      }
      close(c);
    }
  }

  const std::string get_body_;
  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

TEST(S3WireTest, ObjectBodiesAreUnsignedUnlessAskedAndDocumentsAlwaysSigned) {
  RequestRecorder rec;
  ASSERT_NE(rec.port(), 0);
  StoreOptions o;
  o.access_key = "AK";
  o.secret_key = "SK";
  o.create_bucket = true;
  o.multipart_threshold = 1;
  o.multipart_part_size = 5 << 20;
  const std::string base = "http://127.0.0.1:" + std::to_string(rec.port()) + "/bkt";
  const std::string data(6 << 20, 'x');  // two parts
  const std::string part_hash = s3::Sha256Hex(std::string_view(data).substr(0, 5 << 20));
  for (bool signed_payload : {false, true}) {
    auto s = ObjectStore::Open(base + (signed_payload ? "?payload=signed" : ""), o);
    ASSERT_TRUE(s) << s.error().ToString();
    size_t before = rec.Requests().size();
    ASSERT_TRUE((*s)->Put("small", "hello").ok());
    auto reqs = rec.Requests();
    ASSERT_EQ(reqs.size(), before + 1);
    const std::string small = reqs.back();
    EXPECT_EQ(small.rfind("put /bkt/small ", 0), 0u) << small;
    if (signed_payload) {
      EXPECT_NE(small.find("x-amz-content-sha256: " + s3::Sha256Hex("hello")), std::string::npos)
          << small;
    } else {
      EXPECT_NE(small.find("x-amz-content-sha256: unsigned-payload"), std::string::npos) << small;
    }
    // A multipart upload: the parts are object data, the initiate and complete requests are not.
    before = rec.Requests().size();
    Status big = (*s)->Put("big", data);
    ASSERT_TRUE(big.ok()) << big.ToString();
    reqs = rec.Requests();
    ASSERT_EQ(reqs.size(), before + 4);  // initiate, two parts, complete
    EXPECT_EQ(reqs[before].rfind("post /bkt/big?uploads", 0), 0u) << reqs[before];
    EXPECT_NE(reqs[before].find("x-amz-content-sha256: " + s3::Sha256Hex("")), std::string::npos)
        << reqs[before];
    for (size_t i : {before + 1, before + 2}) {
      EXPECT_EQ(reqs[i].rfind("put /bkt/big?partnumber=", 0), 0u) << reqs[i];
      const bool has_unsigned =
          reqs[i].find("x-amz-content-sha256: unsigned-payload") != std::string::npos;
      EXPECT_EQ(has_unsigned, !signed_payload) << reqs[i];
    }
    if (signed_payload) {
      EXPECT_NE(reqs[before + 1].find("x-amz-content-sha256: " + part_hash), std::string::npos)
          << reqs[before + 1];
    }
    EXPECT_EQ(reqs[before + 3].rfind("post /bkt/big?uploadid=u1", 0), 0u) << reqs[before + 3];
    EXPECT_EQ(reqs[before + 3].find("unsigned-payload"), std::string::npos) << reqs[before + 3];
  }
}

TEST(S3WireTest, ARangeAnsweredWithTheWholeObjectIsCutToTheRange) {
  const std::string object = "0123456789abcdefghij";
  RequestRecorder rec(object);
  ASSERT_NE(rec.port(), 0);
  StoreOptions o;
  o.access_key = "AK";
  o.secret_key = "SK";
  auto s = ObjectStore::Open("http://127.0.0.1:" + std::to_string(rec.port()) + "/bkt", o);
  ASSERT_TRUE(s) << s.error().ToString();
  std::string buf(64, 'z');  // stale bytes in a recycled buffer
  ASSERT_TRUE((*s)->GetInto("k", 5, 4, &buf).ok());
  EXPECT_EQ(buf, "5678");
  ASSERT_TRUE((*s)->GetInto("k", 18, 100, &buf).ok());  // clipped at the end
  EXPECT_EQ(buf, "ij");
  ASSERT_TRUE((*s)->GetInto("k", 25, 3, &buf).ok());  // past the end
  EXPECT_EQ(buf, "");
  ASSERT_TRUE((*s)->GetInto("k", 0, UINT64_MAX, &buf).ok());
  EXPECT_EQ(buf, object);
  auto got = (*s)->Get("k", 10, 5);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(*got, "abcde");
  auto reqs = rec.Requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_NE(reqs.back().find("range: bytes=10-14"), std::string::npos) << reqs.back();
}

TEST_F(S3ServerTest, SignedAndUnsignedBodiesAreBothAccepted) {
  for (const char* payload : {"", "?payload=signed", "?payload=unsigned"}) {
    auto s = ObjectStore::Open(server_->BucketUrl(Prefix()) + payload, options_);
    ASSERT_TRUE(s) << s.error().ToString();
    ASSERT_TRUE((*s)->Put(std::string("k") + payload, "body").ok()) << payload;
    EXPECT_EQ(*(*s)->Get(std::string("k") + payload), "body");
  }
}

TEST_F(S3ServerTest, GetIntoReusesTheBuffersStorage) {
  auto s = ObjectStore::Open(server_->BucketUrl(Prefix()), options_);
  ASSERT_TRUE(s) << s.error().ToString();
  std::string data(1 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 999);
  ASSERT_TRUE((*s)->Put("obj", data).ok());
  std::string buf(2 << 20, 'z');  // stale content, room for the object
  const char* storage = buf.data();
  ASSERT_TRUE((*s)->GetInto("obj", 0, UINT64_MAX, &buf).ok());
  EXPECT_EQ(buf, data);
  EXPECT_EQ(buf.data(), storage);  // received in place: no new allocation
  ASSERT_TRUE((*s)->GetInto("obj", 5, 10, &buf).ok());
  EXPECT_EQ(buf, data.substr(5, 10));
  ASSERT_TRUE((*s)->GetInto("obj", data.size() + 5, 10, &buf).ok());  // past the end
  EXPECT_EQ(buf, "");
  Status missing = (*s)->GetInto("none", 0, UINT64_MAX, &buf);
  EXPECT_EQ(missing.code(), ENOENT) << missing.ToString();
}

}  // namespace
}  // namespace nexus::object
