// Parsing of S3's XML answers with libxml2 (element names are compared without namespaces).
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <ctime>
#include <memory>
#include <mutex>

#include "object/s3_store.h"

namespace nexus::object::s3 {
namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

Doc ParseXml(std::string_view xml) {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
  if (xml.empty()) return nullptr;
  return Doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "s3.xml", nullptr,
                           XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
}

bool Is(const xmlNode* n, const char* name) {
  return n && n->type == XML_ELEMENT_NODE &&
         xmlStrcmp(n->name, reinterpret_cast<const xmlChar*>(name)) == 0;
}

const xmlNode* Child(const xmlNode* parent, const char* name) {
  for (const xmlNode* c = parent ? parent->children : nullptr; c; c = c->next) {
    if (Is(c, name)) return c;
  }
  return nullptr;
}

std::string Text(const xmlNode* n) {
  if (!n) return {};
  xmlChar* s = xmlNodeGetContent(n);
  std::string out = s ? reinterpret_cast<const char*>(s) : "";
  xmlFree(s);
  return out;
}

std::string ChildText(const xmlNode* parent, const char* name) { return Text(Child(parent, name)); }

}  // namespace

S3Error ParseError(std::string_view xml) {
  S3Error e;
  Doc doc = ParseXml(xml);
  const xmlNode* root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  if (!Is(root, "Error")) return e;
  e.code = ChildText(root, "Code");
  e.message = ChildText(root, "Message");
  return e;
}

Result<ListPage> ParseListV2(std::string_view xml) {
  Doc doc = ParseXml(xml);
  const xmlNode* root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  if (!Is(root, "ListBucketResult")) {
    return Err(EIO, "list: the answer is not a ListBucketResult document");
  }
  ListPage page;
  page.truncated = ChildText(root, "IsTruncated") == "true";
  page.continuation = ChildText(root, "NextContinuationToken");
  for (const xmlNode* c = root->children; c; c = c->next) {
    if (!Is(c, "Contents")) continue;
    ObjectInfo info;
    info.key = ChildText(c, "Key");
    std::string size = ChildText(c, "Size");
    info.size = size.empty() ? 0 : std::strtoull(size.c_str(), nullptr, 10);
    info.mtime = ParseTime(ChildText(c, "LastModified"));
    if (info.key.empty()) return Err(EIO, "list: an entry has no Key");
    page.objects.push_back(std::move(info));
  }
  if (page.truncated && page.continuation.empty() && page.objects.empty()) {
    return Err(EIO, "list: a truncated page without objects or continuation token");
  }
  return page;
}

Result<std::string> ParseUploadId(std::string_view xml) {
  Doc doc = ParseXml(xml);
  const xmlNode* root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  std::string id = Is(root, "InitiateMultipartUploadResult") ? ChildText(root, "UploadId") : "";
  if (id.empty()) return Err(EIO, "the answer to InitiateMultipartUpload has no UploadId");
  return id;
}

int64_t ParseTime(std::string_view text) {
  std::string s(text);
  std::tm tm{};
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (!end) {
    tm = std::tm{};
    end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  }
  if (!end) return 0;
  int64_t ns = static_cast<int64_t>(timegm(&tm)) * 1000000000LL;
  if (*end == '.') {  // fractional seconds
    int64_t scale = 100000000LL;
    for (++end; *end >= '0' && *end <= '9'; ++end) {
      ns += (*end - '0') * scale;
      scale /= 10;
    }
  }
  return ns;
}

}  // namespace nexus::object::s3
