// Word dropout on the user's questions (TrainerOptions::question_dropout_*):
// extra copies of a taught example whose question lost some of its words,
// so that the fact hangs on whichever of the question's words remain, not on
// all of them together, and a paraphrase the user never typed still reaches
// it.
#pragma once

#include <cstdint>
#include <vector>

#include "attune/feedback/example.h"

namespace attune::trainer::internal {

// Up to `copies` copies of `example`, each with its question (the last
// message of its context) rewritten: every whitespace-separated word but the
// last dropped with probability `p`, at least two words kept (a copy that
// would keep fewer is not made), the words joined by single spaces. A copy
// may keep every word. Each copy weighs `weight` x the example's weight and
// is named `<event_id>#q<k>`. The draws depend only on `seed` and the
// event id, so a resumed window makes the same copies.
//
// Only SFT examples (demonstrations, corrections, thumbs-up: what to answer)
// whose question has at least `min_words` words (and three) get copies; none for preferences
// and ratings down, which say how to answer, not what.
std::vector<feedback::Example> QuestionDropoutCopies(const feedback::Example& example, int64_t copies, double p,
                                                     double weight, int64_t min_words, uint64_t seed);

}  // namespace attune::trainer::internal
