#include "tinygrad-cpp/models/fashion_gap.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/nn/optim.h"

namespace tg::models {

std::shared_ptr<nn::Sequential> make_fashion_gap_cnn(Generator& gen) {
  auto model = std::make_shared<nn::Sequential>();
  model->add("conv1", std::make_shared<nn::Conv2d>(1, 16, 5, gen, 1, 2))
      .add("relu1", std::make_shared<nn::ReLU>())
      .add("pool1", std::make_shared<nn::MaxPool2d>(2))
      .add("conv2", std::make_shared<nn::Conv2d>(16, 32, 5, gen, 1, 2))
      .add("relu2", std::make_shared<nn::ReLU>())
      .add("conv3", std::make_shared<nn::Conv2d>(32, 64, 3, gen, 1, 1))
      .add("relu3", std::make_shared<nn::ReLU>())
      .add("gap", std::make_shared<nn::AdaptiveAvgPool2d>(1))
      .add("flatten", std::make_shared<nn::Flatten>())
      .add("fc", std::make_shared<nn::Linear>(64, 10, gen));
  nn::ModelInfo info = fashion_cnn_info();  // the same input and classes
  info.arch = "FashionGAP";
  info.cam_layer = "relu3";
  model->set_info(info);
  return model;
}

std::shared_ptr<nn::Sequential> train_fashion_gap_cnn(const nn::Sequential& fashion_cnn, const data::Dataset& train,
                                                      const GapTraining& options,
                                                      const std::function<void(int64_t, double)>& on_step) {
  if (options.steps < 1 || options.batch < 1 || !(options.lr > 0.f))
    throw Error(fmt::format("train_fashion_gap_cnn: steps {} and batch {} must be positive and lr {} greater than 0",
                            options.steps, options.batch, options.lr));
  if (train.size() == 0) throw Error("train_fashion_gap_cnn: the training set is empty");
  Generator gen(options.seed);
  auto model = make_fashion_gap_cnn(gen);
  // The convolutions start where FashionCNN's training left them; the head starts at random.
  for (auto& [name, parameter] : model->named_parameters()) {
    if (name.rfind("conv1", 0) != 0 && name.rfind("conv2", 0) != 0) continue;
    const Tensor trained = fashion_cnn.parameter(name);
    if (trained.shape() != parameter.shape())
      throw Error(fmt::format("train_fashion_gap_cnn: '{}' is {} in the FashionCNN, {} here", name,
                              shape_str(trained.shape()), shape_str(parameter.shape())));
    Tensor destination = parameter;
    std::copy(trained.data(), trained.data() + trained.numel(), destination.data());
  }
  model->train();
  optim::Adam adam(model->named_parameters(), options.lr);
  adam.set_schedule(optim::cosine(options.lr, options.steps));
  std::vector<int64_t> order;
  double running = 0;
  for (int64_t step = 0; step < options.steps; ++step) {
    const int64_t begin = (step * options.batch) % train.size();
    if (begin < options.batch) order = data::shuffled_indices(train.size(), gen);  // a new epoch
    const data::Batch batch = data::make_batch(train, order, begin, std::min(begin + options.batch, train.size()));
    const Tensor loss = cross_entropy((*model)(batch.images), batch.labels);
    if (!std::isfinite(loss.item()))
      throw Error(fmt::format("train_fashion_gap_cnn: the loss became {} at step {}", loss.item(), step + 1));
    adam.zero_grad();
    loss.backward();
    adam.step();
    running = step == 0 ? loss.item() : 0.95 * running + 0.05 * loss.item();
    if (on_step) on_step(step + 1, running);
  }
  model->eval();
  return model;
}

}  // namespace tg::models
