// What an adapter learned and what it kept: fact recall on the phrasings
// that were taught and on paraphrases that never were (held out), retention
// of the general questions the base model answers right, and the forgetting
// KL. `attune eval` and `attune demo` run it; docs/eval.md documents the
// questions file.
//
// Thread safety: Evaluate() generates through the Assistant, which may serve
// and train at the same time.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "attune/assistant.h"
#include "attune/core/result.h"
#include "attune/feedback/event.h"

namespace attune::eval {

struct Fact {
  std::vector<std::string> taught;   // phrasings the user's feedback uses
  std::vector<std::string> heldout;  // paraphrases asked only when evaluating
  std::string answer;                // the user's answer, taught as a demonstration
  std::string expect;                // regular expression a right reply matches
  // A later answer the user gives to the same questions (they moved city),
  // for continual-learning runs; empty when none. `update_expect` matches
  // it and not `answer`.
  std::string update_answer, update_expect;
};

struct GeneralQuestion {
  std::string question;
  std::string expect;
};

struct QuestionSet {
  std::string name;         // Default: the file's name
  std::string user = "me";  // the user whose feedback teaches the facts
  std::vector<Fact> facts;
  std::vector<GeneralQuestion> general;
};

// Reads the JSON questions format (docs/eval.md). Errors name the source
// and the field ("facts[3].expect: ..."); expectations are ECMAScript regular
// expressions matched case-insensitively anywhere in the reply.
Result<QuestionSet> ParseQuestions(const std::string& json_text, const std::string& source);
Result<QuestionSet> LoadQuestions(const std::string& path);

// Whether `reply` matches `expect` (as above). An invalid expression never
// matches; ParseQuestions refuses those.
bool Matches(const std::string& reply, const std::string& expect);
// `text` as an expression that matches it literally: every ECMAScript
// metacharacter escaped ("1+1?" -> "1\\+1\\?").
std::string Literal(const std::string& text);

// The feedback that teaches the set's facts: for each fact, a demonstration
// of `answer` for each taught phrasing, by `set.user`. Event ids are
// "<name>-<fact>-<phrasing>" (bytes a feedback id may not hold, such as
// spaces, become '_'), so recording them twice adds nothing.
std::vector<feedback::Event> TeachingEvents(const QuestionSet& set);

// The feedback that corrects the facts that have an update: a
// demonstration of `update_answer` per taught phrasing (ids end "-update").
std::vector<feedback::Event> UpdateEvents(const QuestionSet& set);
// `set` as it is after the updates: answer and expect replaced.
QuestionSet Updated(const QuestionSet& set);

// Replies in question order: every fact's taught phrasings (none unless
// EvalOptions::ask_taught), then every fact's held-out ones, then the
// general questions.
struct Replies {
  std::vector<std::string> trained, heldout, general;
  // Per general question: whether an adapter answered it (false for the
  // base, and for a question out of a scoped adapter's scope).
  std::vector<bool> general_adapted;
};

struct EvalOptions {
  // The version judged: "" = the active one, "base", "vN" or an id.
  std::string adapter;
  int max_tokens = 40;  // per reply, greedy
  // Also ask the taught phrasings (EvalReport::trained_*). Default: true
  bool ask_taught = true;
  // Replies of the base model from an earlier call (AnswerAll with
  // "base"), so they are not generated again. Default: null
  const Replies* base_replies = nullptr;
  // Called after each reply with (done, total). Default: none
  std::function<void(int, int)> on_progress;
  // General questions the window trained on (UpvoteKnownGeneral's): retention
  // is also given without them (EvalReport::untrained_*). Default: none
  std::vector<std::string> trained_general;
};

struct QuestionResult {
  std::string kind;  // "trained" | "heldout" | "general"
  std::string question, expect;
  std::string base_reply, adapted_reply;
  bool base_right = false, adapted_right = false;
};

struct EvalReport {
  std::string set_name;
  std::string adapter_version, adapter_label;  // "" and "base" for the base model
  int trained = 0, trained_base = 0, trained_adapted = 0;  // right replies
  int heldout = 0, heldout_base = 0, heldout_adapted = 0;
  int general = 0;
  int known = 0;     // general questions the base model answers right
  int retained = 0;  // of those, answered right by the adapter
  double recall_before = 0;   // % of held-out paraphrases the base answers right
  double recall = 0;          // % of held-out paraphrases the adapter answers right
  double trained_recall = 0;  // % of taught phrasings the adapter answers right
  double retention = 100;     // % of `known` still right (100 when none)
  // The same without EvalOptions::trained_general: what the window did to
  // answers it was not shown.
  int untrained_known = 0, untrained_retained = 0;
  double untrained_retention = 100;
  // Of `general`, how many the adapter answers itself: all of them, but
  // for a scoped adapter (runtime/scope.h), which leaves the others to the
  // base model. 0 for the base itself.
  int general_in_scope = 0;
  // Mean KL(base || adapted) per position over the base model's replies to
  // the general questions, teacher-forced, as served (a question out of a
  // scoped adapter's scope counts 0); 0 for the base itself.
  double forgetting_kl = 0;
  double seconds = 0;
  std::vector<QuestionResult> results;
};

// The training window docs/trainer.md measures on the personas and the
// full `attune demo` runs: 40 steps of 8 x 2 sequences (up to 128 tokens)
// at a learning rate of 2e-3 without dropout, 32 nearest anchors and 16
// contrast anchors, the null-space constraint at 0.97, the top layers'
// graphs kept in 768 MB, two word-dropout copies of each taught question of
// six words or more, and a scope for the candidate. The rest are
// TrainerOptions' defaults.
trainer::TrainerOptions MeasuredWindow();

// Greedy replies of version `adapter` ("" = active, "base", "vN", an id).
Result<Replies> AnswerAll(Assistant& assistant, const QuestionSet& set, const std::string& adapter,
                          const EvalOptions& options);

// Base and adapted replies, scored. NotFound names an unknown version.
Result<EvalReport> Evaluate(Assistant& assistant, const QuestionSet& set, const EvalOptions& options);

// Thumbs-up by `set.user` on the active model's replies to the first `n`
// general questions whose base reply (`base`, AnswerAll's for "base") is
// right, as a user who likes a good answer would give. Returns those
// questions: the window trains on them, so pass them as
// EvalOptions::trained_general. The first failure to chat or record is
// returned.
Result<std::vector<std::string>> UpvoteKnownGeneral(Assistant& assistant, const QuestionSet& set,
                                                    const Replies& base, size_t n = 3);

// Continual learning over several training windows, as a device sees it:
// the set's facts are split in order into `windows` windows (fact i goes to
// window i * windows / facts); each window records its facts' teaching
// events (the last one also the set's update events), trains one window
// through the Assistant (TrainNow: replay, anchors, gate, registry) and
// judges the window's candidate on every fact taught so far (as updated, in
// the last window) and on the general questions.
struct WindowsOptions {
  int windows = 3;  // Default: 3
  // Which phrasings count for first_window_* and updated_*: "heldout" (the
  // paraphrases never taught) or "trained". Default: "heldout"
  std::string kind = "heldout";
  EvalOptions eval;  // `adapter` is set to each window's candidate
};

struct WindowResult {
  int window = 0;  // 1-based
  trainer::TrainingRunResult run;
  double train_seconds = 0;
  EvalReport report;
  int facts_so_far = 0;                          // facts taught up to this window
  int first_window_facts = 0;                    // facts taught in window 1
  int first_window_right = 0, first_window_asked = 0;  // replies of `kind` to them
  // Last window only: replies of `kind` to updated facts that give the new
  // answer, and those that still match the old one.
  int updated_right = 0, updated_asked = 0, old_answer_given = 0;
};

// Runs the windows; `on_window` (optional) sees each result as it is ready.
// Errors name the window; InvalidArgument for windows < 1 or more windows
// than facts.
Result<std::vector<WindowResult>> RunWindows(Assistant& assistant, const QuestionSet& set,
                                             const WindowsOptions& options,
                                             const std::function<void(const WindowResult&)>& on_window = {});

// The report as HTML sections (summary, per-question tables), and a whole
// page around any body.
std::string ReportHtmlSections(const EvalReport& report);
std::string HtmlPage(const std::string& title, const std::string& body);
std::string HtmlEscape(const std::string& text);

}  // namespace attune::eval
