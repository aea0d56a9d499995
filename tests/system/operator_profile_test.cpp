// Note [Operator profile]: counted calls, self and total time, this thread only.

#include "core/system/operator_profile.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

#include <ATen/ATen.h>

namespace moelab::core {
namespace {

const OperatorProfile::Row* find_row(const std::vector<OperatorProfile::Row>& rows,
                                     const std::string& name) {
    for (const OperatorProfile::Row& row : rows) {
        if (row.name == name) return &row;
    }
    return nullptr;
}

TEST(OperatorProfile, CountsThisThreadsOperatorsWithSelfAndTotalTime) {
    const at::Tensor a = at::randn({64, 32});
    const at::Tensor b = at::randn({32, 16});
    OperatorProfile profile;
    EXPECT_THROW(OperatorProfile second, std::logic_error);  // one at a time
    for (int i = 0; i < 3; ++i) at::mm(a, b);
    for (int i = 0; i < 2; ++i) at::add(a, a);
    at::linear(a, b.t());                        // calls other operators inside
    std::thread([&] { at::add(a, a); }).join();  // another thread: not counted
    const std::vector<OperatorProfile::Row> rows = profile.rows();
    const OperatorProfile::Row* mm = find_row(rows, "aten::mm");
    const OperatorProfile::Row* add = find_row(rows, "aten::add");
    const OperatorProfile::Row* linear = find_row(rows, "aten::linear");
    ASSERT_NE(mm, nullptr);
    ASSERT_NE(add, nullptr);
    ASSERT_NE(linear, nullptr);
    EXPECT_GE(mm->calls, 3);  // linear may call mm as well
    EXPECT_EQ(add->calls, 2);
    EXPECT_EQ(linear->calls, 1);
    // linear's total holds the operators inside it; its self time is the rest.
    EXPECT_LT(linear->self_seconds, linear->total_seconds);
    double self = 0;
    for (const OperatorProfile::Row& row : rows) {
        EXPECT_LE(row.self_seconds, row.total_seconds + 1e-12) << row.name;
        self += row.self_seconds;
    }
    EXPECT_LE(self, profile.seconds());  // self times add up to time spent in operators
    for (std::size_t i = 1; i < rows.size(); ++i) {
        EXPECT_GE(rows[i - 1].self_seconds, rows[i].self_seconds);  // largest first
    }
    // Between end() and begin() nothing is recorded.
    profile.end();
    const double recorded = profile.seconds();
    at::add(a, a);
    EXPECT_EQ(find_row(profile.rows(), "aten::add")->calls, 2);
    EXPECT_EQ(profile.seconds(), recorded);
    profile.begin();
    at::add(a, a);
    EXPECT_EQ(find_row(profile.rows(), "aten::add")->calls, 3);
    const nlohmann::json json = profile.to_json();
    EXPECT_EQ(json["operators"].size(), rows.size());
    EXPECT_NE(profile.table(3).find("operator (self time)"), std::string::npos);
}

}  // namespace
}  // namespace moelab::core
