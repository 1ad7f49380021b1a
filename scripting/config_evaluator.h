// The JavaScript that evaluates a .js config file (js/config_eval.js), for the
// program to hand to server::setConfigEvaluator: the kuai binary and the addon
// both load config files.
#pragma once

#include <string_view>

namespace kuai::scripting {

std::string_view configEvaluatorSource();

}  // namespace kuai::scripting
