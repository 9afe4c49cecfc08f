// fastmlp/csrc/bindings_types.cpp — the core's types as Python sees them, built from the
// core's own tables: the Activation, Solver and LrSchedule enums, OptimConfig (one
// property per kOptimFields entry), TrainOptions, PixelInput and ChunkResult; and the
// machine as the core sees it (bind_machine): instruction sets, bfloat16 kernels, threads.
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "isa.hpp"
#include "kernels/activation.hpp"
#include "kernels/gemm_bf16.hpp"
#include "kernels/optim.hpp"
#include "pyarray.hpp"
#include "train.hpp"

namespace fastmlp {

void bind_types(py::module_& m) {
  py::enum_<Activation> act(m, "Activation");
  py::dict labels;
  for (const ActivationName& a : kActivations) {
    act.value(a.name, a.activation);
    labels[a.name] = a.label;
  }
  m.attr("ACTIVATION_LABELS") = labels;
  py::enum_<Solver> solver(m, "Solver");
  for (const SolverName& s : kSolvers) solver.value(s.name, s.solver);
  m.attr("STATE_SLOTS") = py::cast(std::vector<std::string>(kSlotNames, kSlotNames + kSlotCount));

  py::class_<OptimConfig> cfg(m, "OptimConfig");
  cfg.def(py::init<>())
      .def_readwrite("solver", &OptimConfig::solver)
      .def_readwrite("nesterov", &OptimConfig::nesterov)
      .def("slots", [](const OptimConfig& c) {  // the state slots the solver uses
        std::vector<std::string> s;
        for (int k = 0; k < kSlotCount; ++k)
          if (needs_slot(c, static_cast<Slot>(k))) s.push_back(kSlotNames[k]);
        return s;
      });
  for (const OptimField& f : kOptimFields) {
    auto member = f.member;
    cfg.def_property(f.name, [member](const OptimConfig& c) { return c.*member; },
                     [member](OptimConfig& c, double v) { c.*member = v; });
  }

  py::enum_<LrSchedule> schedule(m, "LrSchedule");
  schedule.value(kScheduleNames[0], LrSchedule::Constant)
      .value(kScheduleNames[1], LrSchedule::Cosine);
  cfg.def_readwrite("schedule", &OptimConfig::schedule);
  m.def("scheduled_learning_rate", &scheduled_learning_rate, py::arg("config"), py::arg("t"));

  py::enum_<Precision>(m, "Precision")
      .value(kPrecisionNames[0], Precision::Float32)
      .value(kPrecisionNames[1], Precision::BFloat16);

  py::class_<TrainOptions>(m, "TrainOptions")
      .def(py::init<>())
      .def_readwrite("precision", &TrainOptions::precision)
      .def_readwrite("seed", &TrainOptions::seed)
      .def_readwrite("dropout", &TrainOptions::dropout)
      .def_readwrite("label_smoothing", &TrainOptions::label_smoothing)
      .def_property("image", [](const TrainOptions& o) {
        const ImageGeometry& g = o.augment.image;
        return py::make_tuple(g.height, g.width, g.channels, g.channels_first);
      }, [](TrainOptions& o, std::tuple<index_t, index_t, index_t, bool> g) {
        o.augment.image = {std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g)};
      })
      .def_property("random_shift", [](const TrainOptions& o) { return o.augment.shift; },
                    [](TrainOptions& o, index_t v) { o.augment.shift = v; })
      .def_property("random_flip", [](const TrainOptions& o) { return o.augment.flip; },
                    [](TrainOptions& o, bool v) { o.augment.flip = v; });

  py::class_<PixelInput, std::shared_ptr<PixelInput>>(m, "PixelInput")
      .def(py::init(&pixel_input), py::arg("X"), py::kw_only(), py::arg("offset") = py::none(),
           py::arg("scale") = py::none(), py::arg("channels_last") = true)
      .def_property_readonly("shape", [](const PixelInput& p) {
        return py::make_tuple(p.rows.rows(), p.rows.features());
      });

  py::class_<ChunkResult>(m, "ChunkResult")
      .def_readonly("loss_sum", &ChunkResult::loss_sum)
      .def_readonly("weight_sum", &ChunkResult::weight_sum)
      .def_readonly("n_correct", &ChunkResult::n_correct)
      .def_readonly("n_samples", &ChunkResult::n_samples)
      .def_readonly("n_batches", &ChunkResult::n_batches)
      .def_readonly("t", &ChunkResult::t)
      .def_readonly("finite", &ChunkResult::finite);
}

namespace {

Isa isa_from(const std::string& name) {
  Isa isa;
  if (!parse_isa(name.c_str(), &isa))
    throw std::invalid_argument(std::string("isa must be ") + isa_names() + ", got '" + name + "'");
  return isa;
}

}  // namespace

void bind_machine(py::module_& m) {
  m.def("bf16_hardware", &bf16_hardware);
  m.def("detected_isa", [] { return std::string(isa_name(detected_isa())); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_isa", [](const std::string& s) { set_isa(isa_from(s)); }, py::arg("isa"));
  m.def("detected_bf16_kernel",
        [] { return std::string(bf16_kernel_name(detected_bf16_kernel())); });
  m.def("active_bf16_kernel", [] { return std::string(bf16_kernel_name(active_bf16_kernel())); });
  m.def("set_bf16_kernel", [](const std::string& s) {
    Bf16Kernel k;
    if (!parse_bf16_kernel(s.c_str(), &k))
      throw std::invalid_argument(std::string("kernel must be ") + bf16_kernel_names() +
                                  ", got '" + s + "'");
    set_bf16_kernel(k);
  }, py::arg("kernel"));
  m.def("max_threads", &default_num_threads);
  m.attr("MAX_THREADS") = kMaxThreads;
#if defined(_OPENMP)
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}

}  // namespace fastmlp
