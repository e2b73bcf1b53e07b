#include "attune/eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string_view>

#include "attune/core/file.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/generate.h"

namespace attune::eval {
namespace {

using nlohmann::json;

Status FieldError(const std::string& source, const std::string& field, const std::string& what) {
  return InvalidArgumentError(source + ": " + field + ": " + what + " (docs/eval.md describes the format)");
}

Result<std::string> NonEmptyString(const json& j, const char* key, const std::string& source, const std::string& at,
                                   bool required = true) {
  const std::string field = at + key;
  if (!j.contains(key)) {
    if (required) return FieldError(source, field, "missing");
    return std::string();
  }
  if (!j[key].is_string()) return FieldError(source, field, "must be a string");
  std::string s = j[key].get<std::string>();
  if (s.empty()) return FieldError(source, field, "must not be empty");
  return s;
}

Status CheckRegex(const std::string& expr, const std::string& source, const std::string& field) {
  try {
    std::regex re(expr, std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    return FieldError(source, field, "is not a valid regular expression: " + std::string(e.what()));
  }
  return Status::Ok();
}

Result<std::vector<std::string>> Strings(const json& j, const char* key, const std::string& source,
                                         const std::string& at, bool at_least_one) {
  const std::string field = at + key;
  std::vector<std::string> out;
  if (!j.contains(key)) {
    if (at_least_one) return FieldError(source, field, "missing");
    return out;
  }
  if (!j[key].is_array()) return FieldError(source, field, "must be an array of strings");
  for (size_t i = 0; i < j[key].size(); ++i) {
    const json& s = j[key][i];
    if (!s.is_string() || s.get<std::string>().empty()) {
      return FieldError(source, field + "[" + std::to_string(i) + "]", "must be a non-empty string");
    }
    out.push_back(s.get<std::string>());
  }
  if (at_least_one && out.empty()) return FieldError(source, field, "must hold at least one question");
  return out;
}

// `s` as a feedback key (ids and users are printable ASCII, no spaces).
std::string AsKey(const std::string& s) {
  std::string k = s;
  for (char& c : k) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) c = '_';
  }
  return k;
}

// Refuses a key of object `j` that is not in `allowed`, naming it.
Status CheckKeys(const json& j, std::initializer_list<const char*> allowed, const std::string& source,
                 const std::string& at) {
  for (const auto& [k, v] : j.items()) {
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) {
      return FieldError(source, at + k, "unknown key");
    }
  }
  return Status::Ok();
}

double Percent(int part, int whole, double if_none) { return whole ? 100.0 * part / double(whole) : if_none; }

std::string Fixed(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

}  // namespace

trainer::TrainerOptions MeasuredWindow() {
  trainer::TrainerOptions t;
  t.max_steps = 40;
  t.null_space_energy = 0.97;
  t.micro_batch_size = 8;
  t.grad_accum_steps = 2;
  // The top layers of each micro-batch keep their graph instead of being
  // recomputed: 15-22 % faster for about 1 GB (docs/trainer.md, Memory).
  t.graph_memory_mb = 768;
  t.adamw.lr = 2e-3;
  t.lora.dropout = 0.0;
  t.encode.max_seq_len = 128;
  t.anchor_examples = 32;
  t.anchor_selection = "nearest";
  // The window's questions asked about no one, kept to the base's answers
  // (docs/trainer.md, "Contrast anchors").
  t.contrast_anchors = 16;
  // Two copies of each taught question of six words or more with some words
  // dropped, at half weight (docs/trainer.md, "Word dropout in the tree").
  t.question_dropout_copies = 2;
  // The adapter answers what the window was about, the base model the rest
  // (docs/adapters.md, "Scope"; docs/trainer.md, "Scoped adapters").
  t.scope = true;
  return t;
}

Result<QuestionSet> ParseQuestions(const std::string& json_text, const std::string& source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError(source + ": not valid JSON (docs/eval.md describes the format)");
  if (!j.is_object()) return FieldError(source, "(top level)", "must be an object");
  RETURN_IF_ERROR(CheckKeys(j, {"name", "user", "facts", "general"}, source, ""));
  QuestionSet set;
  ASSIGN_OR_RETURN(set.name, NonEmptyString(j, "name", source, "", /*required=*/false));
  if (set.name.empty()) set.name = std::filesystem::path(source).stem().string();
  ASSIGN_OR_RETURN(std::string user, NonEmptyString(j, "user", source, "", /*required=*/false));
  if (!user.empty()) {
    if (AsKey(user) != user) return FieldError(source, "user", "must be printable ASCII without spaces");
    set.user = user;
  }
  if (j.contains("facts")) {
    if (!j["facts"].is_array()) return FieldError(source, "facts", "must be an array");
    for (size_t i = 0; i < j["facts"].size(); ++i) {
      const json& f = j["facts"][i];
      const std::string at = "facts[" + std::to_string(i) + "].";
      if (!f.is_object()) return FieldError(source, at.substr(0, at.size() - 1), "must be an object");
      RETURN_IF_ERROR(CheckKeys(f, {"taught", "heldout", "answer", "expect", "update"}, source, at));
      Fact fact;
      ASSIGN_OR_RETURN(fact.taught, Strings(f, "taught", source, at, false));
      ASSIGN_OR_RETURN(fact.heldout, Strings(f, "heldout", source, at, true));
      ASSIGN_OR_RETURN(fact.answer, NonEmptyString(f, "answer", source, at, /*required=*/!fact.taught.empty()));
      ASSIGN_OR_RETURN(fact.expect, NonEmptyString(f, "expect", source, at));
      RETURN_IF_ERROR(CheckRegex(fact.expect, source, at + "expect"));
      if (!fact.answer.empty() && !Matches(fact.answer, fact.expect)) {
        return FieldError(source, at + "expect", "does not match the fact's own answer '" + fact.answer + "'");
      }
      if (f.contains("update")) {
        const json& u = f["update"];
        if (!u.is_object()) return FieldError(source, at + "update", "must be an object with answer and expect");
        RETURN_IF_ERROR(CheckKeys(u, {"answer", "expect"}, source, at + "update."));
        ASSIGN_OR_RETURN(fact.update_answer, NonEmptyString(u, "answer", source, at + "update."));
        ASSIGN_OR_RETURN(fact.update_expect, NonEmptyString(u, "expect", source, at + "update."));
        RETURN_IF_ERROR(CheckRegex(fact.update_expect, source, at + "update.expect"));
        if (!Matches(fact.update_answer, fact.update_expect) || Matches(fact.answer, fact.update_expect)) {
          return FieldError(source, at + "update.expect", "must match the update's answer and not the first answer");
        }
        if (fact.taught.empty()) return FieldError(source, at + "update", "needs taught phrasings to teach it with");
      }
      set.facts.push_back(std::move(fact));
    }
  }
  if (j.contains("general")) {
    if (!j["general"].is_array()) return FieldError(source, "general", "must be an array");
    for (size_t i = 0; i < j["general"].size(); ++i) {
      const json& g = j["general"][i];
      const std::string at = "general[" + std::to_string(i) + "].";
      if (!g.is_object()) return FieldError(source, at.substr(0, at.size() - 1), "must be an object");
      RETURN_IF_ERROR(CheckKeys(g, {"question", "expect"}, source, at));
      GeneralQuestion q;
      ASSIGN_OR_RETURN(q.question, NonEmptyString(g, "question", source, at));
      ASSIGN_OR_RETURN(q.expect, NonEmptyString(g, "expect", source, at));
      RETURN_IF_ERROR(CheckRegex(q.expect, source, at + "expect"));
      set.general.push_back(std::move(q));
    }
  }
  if (set.facts.empty() && set.general.empty()) {
    return FieldError(source, "facts", "the file asks nothing (no facts and no general questions)");
  }
  return set;
}

Result<QuestionSet> LoadQuestions(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseQuestions(text, path);
}

std::string Literal(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

bool Matches(const std::string& reply, const std::string& expect) {
  try {
    return std::regex_search(reply, std::regex(expect, std::regex::ECMAScript | std::regex::icase));
  } catch (const std::regex_error&) {
    return false;
  }
}

namespace {

// A demonstration of `answer` to the k-th taught phrasing of fact i.
feedback::Event TeachingEvent(const QuestionSet& set, size_t i, size_t k, const std::string& answer,
                              const std::string& id_suffix) {
  feedback::Event e;
  e.id = AsKey(set.name) + "-" + std::to_string(i) + "-" + std::to_string(k) + id_suffix;
  e.user_id = AsKey(set.user);
  e.conversation_id = AsKey(set.name);
  e.context = {{feedback::Role::kUser, set.facts[i].taught[k]}};
  e.signal = feedback::Demonstration{answer};
  return e;
}

}  // namespace

std::vector<feedback::Event> TeachingEvents(const QuestionSet& set) {
  std::vector<feedback::Event> out;
  for (size_t i = 0; i < set.facts.size(); ++i) {
    for (size_t k = 0; k < set.facts[i].taught.size(); ++k) out.push_back(TeachingEvent(set, i, k, set.facts[i].answer, ""));
  }
  return out;
}

std::vector<feedback::Event> UpdateEvents(const QuestionSet& set) {
  std::vector<feedback::Event> out;
  for (size_t i = 0; i < set.facts.size(); ++i) {
    const Fact& f = set.facts[i];
    if (f.update_answer.empty()) continue;
    for (size_t k = 0; k < f.taught.size(); ++k) out.push_back(TeachingEvent(set, i, k, f.update_answer, "-update"));
  }
  return out;
}

Result<std::vector<std::string>> UpvoteKnownGeneral(Assistant& assistant, const QuestionSet& set,
                                                    const Replies& base, size_t n) {
  if (base.general.size() != set.general.size()) {
    return InvalidArgumentError("the base replies given do not belong to question set '" + set.name + "'");
  }
  std::vector<std::string> upvoted;
  for (size_t i = 0; i < set.general.size() && upvoted.size() < n; ++i) {
    if (!Matches(base.general[i], set.general[i].expect)) continue;
    ASSIGN_OR_RETURN(auto reply, assistant.Chat({{"user", set.general[i].question}}));
    feedback::Event e;
    e.user_id = set.user;
    e.signal = feedback::Rating{feedback::Thumb::kUp};
    RETURN_IF_ERROR(assistant.Record(e, reply.response_id).status());
    upvoted.push_back(set.general[i].question);
  }
  return upvoted;
}

QuestionSet Updated(const QuestionSet& set) {
  QuestionSet out = set;
  for (auto& f : out.facts) {
    if (f.update_answer.empty()) continue;
    f.answer = f.update_answer;
    f.expect = f.update_expect;
    f.update_answer.clear();
    f.update_expect.clear();
  }
  return out;
}

namespace {

// Every reply of one pinned version (the base when it has no snapshot).
Result<Replies> AnswerPinned(Assistant& assistant, const QuestionSet& set, const Assistant::PinnedAdapter& pinned,
                             const EvalOptions& options) {
  runtime::GenerateOptions g;
  g.max_tokens = options.max_tokens;
  g.use_active_adapter = pinned.snapshot != nullptr;
  g.adapter = pinned.snapshot;
  int total = 0, done = 0;
  for (const auto& f : set.facts) total += int((options.ask_taught ? f.taught.size() : 0) + f.heldout.size());
  total += int(set.general.size());
  bool adapted = false;  // the last reply's
  auto ask = [&](const std::string& q) -> Result<std::string> {
    ASSIGN_OR_RETURN(ChatReply r, assistant.Chat({{"user", q}}, g, nullptr));
    if (options.on_progress) options.on_progress(++done, total);
    adapted = !r.adapter_version.empty();
    return r.text;
  };
  Replies out;
  for (const auto& f : set.facts) {
    if (!options.ask_taught) break;
    for (const auto& q : f.taught) {
      ASSIGN_OR_RETURN(std::string r, ask(q));
      out.trained.push_back(std::move(r));
    }
  }
  for (const auto& f : set.facts) {
    for (const auto& q : f.heldout) {
      ASSIGN_OR_RETURN(std::string r, ask(q));
      out.heldout.push_back(std::move(r));
    }
  }
  for (const auto& q : set.general) {
    ASSIGN_OR_RETURN(std::string r, ask(q.question));
    out.general.push_back(std::move(r));
    out.general_adapted.push_back(adapted);
  }
  return out;
}

}  // namespace

Result<Replies> AnswerAll(Assistant& assistant, const QuestionSet& set, const std::string& adapter,
                          const EvalOptions& options) {
  // One version answers everything, even when another is promoted meanwhile.
  ASSIGN_OR_RETURN(Assistant::PinnedAdapter pinned, assistant.Pin(adapter));
  return AnswerPinned(assistant, set, pinned, options);
}

Result<EvalReport> Evaluate(Assistant& assistant, const QuestionSet& set, const EvalOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(Assistant::PinnedAdapter pinned, assistant.Pin(options.adapter));
  Replies base;
  if (options.base_replies) {
    base = *options.base_replies;
  } else {
    ASSIGN_OR_RETURN(base, AnswerPinned(assistant, set, Assistant::PinnedAdapter{}, options));
  }
  size_t n_trained = 0, n_heldout = 0;
  for (const auto& f : set.facts) n_trained += options.ask_taught ? f.taught.size() : 0, n_heldout += f.heldout.size();
  if (base.trained.size() != n_trained || base.heldout.size() != n_heldout || base.general.size() != set.general.size()) {
    return InvalidArgumentError("the base replies given do not belong to question set '" + set.name + "'");
  }
  Replies adapted = base;
  if (pinned.snapshot) {
    ASSIGN_OR_RETURN(adapted, AnswerPinned(assistant, set, pinned, options));
  }

  EvalReport r;
  r.set_name = set.name;
  r.adapter_version = pinned.version;
  r.adapter_label = pinned.label;
  auto add = [&](const char* kind, const std::string& q, const std::string& expect, const std::string& b,
                 const std::string& a) {
    QuestionResult x{kind, q, expect, b, a, Matches(b, expect), Matches(a, expect)};
    r.results.push_back(x);
    return x;
  };
  size_t ti = 0, hi = 0;
  for (const auto& f : set.facts) {
    if (!options.ask_taught) break;
    for (const auto& q : f.taught) {
      auto x = add("trained", q, f.expect, base.trained[ti], adapted.trained[ti]);
      ++ti;
      ++r.trained;
      r.trained_base += x.base_right;
      r.trained_adapted += x.adapted_right;
    }
  }
  for (const auto& f : set.facts) {
    for (const auto& q : f.heldout) {
      auto x = add("heldout", q, f.expect, base.heldout[hi], adapted.heldout[hi]);
      ++hi;
      ++r.heldout;
      r.heldout_base += x.base_right;
      r.heldout_adapted += x.adapted_right;
    }
  }
  std::vector<runtime::AnsweredPrompt> kl_answers;
  int64_t in_positions = 0, all_positions = 0;
  auto model = assistant.engine().model();
  for (size_t i = 0; i < set.general.size(); ++i) {
    auto x = add("general", set.general[i].question, set.general[i].expect, base.general[i], adapted.general[i]);
    ++r.general;
    r.known += x.base_right;
    r.retained += x.base_right && x.adapted_right;
    if (std::find(options.trained_general.begin(), options.trained_general.end(), x.question) ==
        options.trained_general.end()) {
      r.untrained_known += x.base_right;
      r.untrained_retained += x.base_right && x.adapted_right;
    }
    if (pinned.snapshot) {
      // A scoped adapter leaves the questions out of its scope to the base:
      // they count with a KL of 0, as served.
      const bool in = adapted.general_adapted[i];
      r.general_in_scope += in;
      auto a = runtime::AnswerIds(*model, set.general[i].question, base.general[i]);
      if (a.ok()) {
        const int64_t n = std::max<int64_t>(0, int64_t(a->ids.size()) - a->first);
        all_positions += n;
        if (in) {
          in_positions += n;
          kl_answers.push_back(std::move(*a));
        }
      }
    }
  }
  r.recall_before = Percent(r.heldout_base, r.heldout, 0);
  r.recall = Percent(r.heldout_adapted, r.heldout, 0);
  r.trained_recall = Percent(r.trained_adapted, r.trained, 0);
  r.retention = Percent(r.retained, r.known, 100);
  r.untrained_retention = Percent(r.untrained_retained, r.untrained_known, 100);
  if (pinned.snapshot && in_positions > 0) {
    r.forgetting_kl = runtime::MeanAnswerKl(*model, pinned.snapshot->weights, kl_answers) * double(in_positions) /
                      double(all_positions);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string HtmlEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string HtmlPage(const std::string& title, const std::string& body) {
  return "<!doctype html><meta charset=utf-8><title>" + HtmlEscape(title) +
         "</title><style>body{font-family:sans-serif;max-width:960px;margin:2em auto}"
         "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
         "table{border-collapse:collapse}.miss{color:#b00}</style><h1>" +
         HtmlEscape(title) + "</h1>" + body;
}

std::string ReportHtmlSections(const EvalReport& r) {
  std::ostringstream h;
  h << "<h2>Evaluation: " << HtmlEscape(r.set_name) << ", adapter " << HtmlEscape(r.adapter_label) << "</h2>"
    << "<table><tr><td>held-out recall<td>" << Fixed(r.recall_before, 0) << "% &rarr; " << Fixed(r.recall, 0) << "% ("
    << r.heldout_adapted << " of " << r.heldout << ")";
  if (r.trained > 0) {
    h << "<tr><td>recall on taught phrasings<td>" << Fixed(r.trained_recall, 0) << "% (" << r.trained_adapted << " of "
      << r.trained << ")";
  }
  h << "<tr><td>retention<td>" << Fixed(r.retention, 0) << "% (" << r.retained << " of the " << r.known << " of "
    << r.general << " general questions the base answers right)";
  if (r.untrained_known != r.known) {
    h << "<tr><td>retention without the upvoted answers<td>" << Fixed(r.untrained_retention, 0) << "% ("
      << r.untrained_retained << " of " << r.untrained_known << ")";
  }
  if (!r.adapter_version.empty() && r.general_in_scope < r.general) {
    h << "<tr><td>scope<td>the adapter answers " << r.general_in_scope << " of the " << r.general
      << " general questions, the base model the others";
  }
  h << "<tr><td>forgetting KL<td>" << Fixed(r.forgetting_kl, 3) << " nats/token</table>";
  auto table = [&](const char* kind, const char* title, bool only_known) {
    h << "<h3>" << title << "</h3><table><tr><th>question<th>expected<th>base<th>adapted";
    for (const auto& x : r.results) {
      if (x.kind != kind || (only_known && !x.base_right)) continue;
      h << "<tr><td>" << HtmlEscape(x.question) << "<td><code>" << HtmlEscape(x.expect) << "</code><td"
        << (x.base_right ? ">" : " class=miss>") << HtmlEscape(x.base_reply) << "<td"
        << (x.adapted_right ? ">" : " class=miss>") << HtmlEscape(x.adapted_reply);
    }
    h << "</table>";
  };
  table("heldout", "Held-out paraphrases", false);
  table("general", "Retention (general questions the base answers right)", true);
  if (r.trained > 0) table("trained", "Taught phrasings", false);
  return h.str();
}

Result<std::vector<WindowResult>> RunWindows(Assistant& assistant, const QuestionSet& set,
                                             const WindowsOptions& options,
                                             const std::function<void(const WindowResult&)>& on_window) {
  const size_t n = set.facts.size();
  if (options.windows < 1 || size_t(options.windows) > n) {
    return InvalidArgumentError("windows must be between 1 and the number of facts (" + std::to_string(n) + "), not " +
                                std::to_string(options.windows));
  }
  if (options.kind != "heldout" && options.kind != "trained") {
    return InvalidArgumentError("kind must be \"heldout\" or \"trained\", not '" + options.kind + "'");
  }
  const size_t w = size_t(options.windows);
  auto window_of = [&](size_t fact) { return fact * w / n; };
  auto phrasings = [&](const Fact& f) { return options.kind == "trained" ? f.taught.size() : f.heldout.size(); };
  int first_window_facts = 0;
  for (size_t i = 0; i < n; ++i) first_window_facts += window_of(i) == 0;
  std::vector<WindowResult> out;
  for (size_t k = 0; k < w; ++k) {
    const std::string where = "window " + std::to_string(k + 1);
    const bool last = k + 1 == w;
    QuestionSet teach = set, judged = set;
    teach.name = set.name + "-w" + std::to_string(k + 1);
    teach.facts.clear();
    judged.facts.clear();
    for (size_t i = 0; i < n; ++i) {
      if (window_of(i) == k) teach.facts.push_back(set.facts[i]);
      if (window_of(i) <= k) judged.facts.push_back(set.facts[i]);
    }
    std::vector<feedback::Event> events = TeachingEvents(teach);
    if (last) {
      for (auto& e : UpdateEvents(set)) events.push_back(std::move(e));
      judged = Updated(judged);
    }
    for (auto& e : events) {
      auto id = assistant.Record(e);
      if (!id.ok()) return id.status().WithContext(where + ": recording " + e.id);
    }
    WindowResult wr;
    wr.window = int(k + 1);
    wr.first_window_facts = first_window_facts;
    wr.facts_so_far = int(judged.facts.size());
    const auto t0 = std::chrono::steady_clock::now();
    auto run = assistant.TrainNow();
    wr.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!run.ok()) return run.status().WithContext(where);
    wr.run = std::move(*run);
    EvalOptions eo = options.eval;
    eo.adapter = wr.run.version.empty() ? "base" : wr.run.version;
    if (!eo.ask_taught && options.kind == "trained") eo.ask_taught = true;
    auto report = Evaluate(assistant, judged, eo);
    if (!report.ok()) return report.status().WithContext(where);
    wr.report = std::move(*report);
    // Results of one kind are in fact order, each fact's phrasings in turn.
    size_t fact = 0, asked = 0;
    for (const auto& x : wr.report.results) {
      if (x.kind != options.kind) continue;
      while (asked >= phrasings(judged.facts[fact])) ++fact, asked = 0;
      ++asked;
      if (window_of(fact) == 0) ++wr.first_window_asked, wr.first_window_right += x.adapted_right;
      if (last && !set.facts[fact].update_answer.empty()) {
        ++wr.updated_asked;
        wr.updated_right += x.adapted_right;
        wr.old_answer_given += Matches(x.adapted_reply, set.facts[fact].expect);
      }
    }
    if (on_window) on_window(wr);
    out.push_back(std::move(wr));
  }
  return out;
}

}  // namespace attune::eval
