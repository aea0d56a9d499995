#pragma once

// Streams the documents of one corpus file, a batch at a time, without reading the file whole:
// plain text (documents separated by blank lines; each line keeps its '\n', as split_documents
// cuts them) or JSONL (one JSON object per line; the document is the named string field), either
// optionally compressed with gzip or zstd; or (prompt, response) pairs, JSONL objects with two
// string fields, whose document is the prompt followed by the response.
//
// Errors are FileError naming the file and, for JSONL, the line: "data/x.jsonl: line 7: no field
// \"text\" (expected an object with the document's text in \"text\")". A JSONL line that is not
// valid JSON, including a string that is not valid UTF-8, is such an error. Empty JSONL lines are
// skipped, as are documents whose text is empty (plain text has none by construction) and pairs
// whose response is empty (nothing in them would count in the loss).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/data/corpus.h"

namespace moelab::core {

struct Document {
    std::string text;
    // The text's first prompt_bytes bytes are a prompt (kPairs only): read by the model, never
    // counted in the loss. 0: the whole text counts.
    std::size_t prompt_bytes = 0;
};

class DocumentReader {
  public:
    virtual ~DocumentReader() = default;

    // Up to about `bytes` of documents, at least one unless the file is exhausted (then empty).
    virtual std::vector<Document> next_batch(std::size_t bytes) = 0;

    // Bytes of the file (compressed, if it is) consumed so far: progress against its size.
    virtual std::uint64_t position() const = 0;
};

std::unique_ptr<DocumentReader> open_documents(const CorpusFile& file);

// Splits corpus text into documents at blank lines. Each document keeps its own line breaks and
// ends with '\n'.
std::vector<std::string> split_documents(const std::string& text);

}  // namespace moelab::core
