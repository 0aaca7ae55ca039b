#include "tinygrad-cpp/models/train.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <numeric>

#include "tinygrad-cpp/models/fashion_cnn.h"

namespace tg::train {

Evaluation evaluate(nn::Module& model, const data::Dataset& data, int64_t batch) {
  NoGrad no_grad;
  const bool was_training = model.is_training();
  model.eval();
  Evaluation e;
  std::vector<int64_t> order(static_cast<size_t>(data.size()));
  std::iota(order.begin(), order.end(), 0);
  double loss_sum = 0;
  for (int64_t begin = 0; begin < data.size(); begin += batch) {
    const int64_t end = std::min(begin + batch, data.size());
    const data::Batch b = data::make_batch(data, order, begin, end);
    const Tensor logits = model(b.images);
    loss_sum += static_cast<double>(cross_entropy(logits, b.labels).item()) * static_cast<double>(end - begin);
    const std::vector<int64_t> predictions = argmax(logits);
    for (int64_t i = 0; i < end - begin; ++i) {
      const int64_t predicted = predictions[i];
      const int64_t label = b.labels[i];
      ++e.class_total[label];
      ++e.total;
      if (predicted == label) {
        ++e.class_correct[label];
        ++e.correct;
      }
    }
  }
  e.loss = e.total ? loss_sum / static_cast<double>(e.total) : 0.0;
  model.train(was_training);
  return e;
}

std::string checkpoint_path(const std::string& out) {
  const std::string suffix = ".safetensors";
  if (out.size() > suffix.size() && out.compare(out.size() - suffix.size(), suffix.size(), suffix) == 0)
    return out.substr(0, out.size() - suffix.size()) + ".ckpt" + suffix;
  return out + ".ckpt";
}

bool train_fashion_cnn(const Options& options, const data::Dataset& train, const data::Dataset& test,
                       const std::function<void(const Progress&)>& on_progress,
                       const std::function<void(const EpochResult&)>& on_epoch, const std::atomic<bool>* stop) {
  if (options.epochs < 1 || options.batch < 1 || !(options.lr > 0.f))
    throw Error(fmt::format("train: epochs {} and batch {} must be positive and lr {} greater than 0", options.epochs,
                            options.batch, options.lr));
  if (train.size() == 0) throw Error("train: the training set is empty");
  Generator init(options.seed);
  auto model = models::make_fashion_cnn(init);
  model->train();
  optim::Adam adam(model->named_parameters(), options.lr);
  const int64_t steps_per_epoch = (train.size() + options.batch - 1) / options.batch;
  adam.set_schedule(optim::cosine(options.lr, steps_per_epoch * options.epochs));

  int first_epoch = 1;
  if (!options.resume.empty()) {
    const io::NamedTensors checkpoint = io::load_safetensors(options.resume);
    try {
      nn::load_state_dict(*model, checkpoint, /*strict=*/false);
      adam.load_state(checkpoint);
      first_epoch = std::stoi(checkpoint.metadata.at("epoch")) + 1;
    } catch (const std::exception& e) {
      throw Error(options.resume + ": not a training checkpoint (" + e.what() + ")");
    }
  }

  std::map<std::string, std::string> metadata = models::fashion_cnn_metadata();
  metadata["seed"] = std::to_string(options.seed);
  metadata["batch"] = std::to_string(options.batch);
  metadata["lr"] = fmt::format("{}", options.lr);
  metadata["epochs"] = std::to_string(options.epochs);
  const auto start = std::chrono::steady_clock::now();
  auto seconds_since_start = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  int64_t images_seen = 0;
  for (int epoch = first_epoch; epoch <= options.epochs; ++epoch) {
    // Each epoch's order depends only on (seed, epoch), so a resumed run repeats it.
    Generator shuffle(options.seed * 1000003u + static_cast<uint64_t>(epoch));
    const std::vector<int64_t> order = data::shuffled_indices(train.size(), shuffle);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      if (stop && stop->load()) return false;
      const int64_t begin = step * options.batch, end = std::min(begin + options.batch, train.size());
      const data::Batch batch = data::make_batch(train, order, begin, end);
      const Tensor logits = (*model)(batch.images);
      const Tensor loss = cross_entropy(logits, batch.labels);
      if (!std::isfinite(loss.item()))
        throw Error(fmt::format("training: the loss became {} at epoch {}, step {}; stopped before writing this epoch's "
                                "weights (a smaller --lr may help)", loss.item(), epoch, step + 1));
      adam.zero_grad();
      loss.backward();
      adam.step();

      loss_sum += static_cast<double>(loss.item()) * static_cast<double>(end - begin);
      const std::vector<int64_t> predictions = argmax(logits);
      for (int64_t i = 0; i < end - begin; ++i) correct += predictions[i] == batch.labels[i];
      seen += end - begin;
      images_seen += end - begin;
      if (on_progress) {
        Progress p;
        p.epoch = epoch;
        p.epochs = options.epochs;
        p.step = step + 1;
        p.steps = steps_per_epoch;
        p.loss = loss_sum / static_cast<double>(seen);
        p.running_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
        p.images_per_second = static_cast<double>(images_seen) / std::max(1e-9, seconds_since_start());
        const double remaining = static_cast<double>((options.epochs - epoch) * train.size() + train.size() - seen);
        p.eta_seconds = remaining / std::max(1e-9, p.images_per_second);
        p.lr = adam.lr();
        on_progress(p);
      }
    }
    EpochResult result;
    result.epoch = epoch;
    result.train_loss = loss_sum / static_cast<double>(seen);
    result.train_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
    result.test = evaluate(*model, test);
    result.seconds = seconds_since_start();

    metadata["epoch"] = std::to_string(epoch);
    metadata["test_accuracy"] = fmt::format("{:.4f}", result.test.accuracy());
    // The weights and the checkpoint of this epoch as one write: both files are complete on
    // disk before either replaces the previous epoch's (both carry "epoch" in their metadata).
    nn::NamedParameters everything = model->named_parameters();
    for (auto& entry : adam.state()) everything.push_back(entry);
    io::write_files_atomic({{options.out, io::serialize_safetensors(model->named_parameters(), metadata)},
                            {checkpoint_path(options.out), io::serialize_safetensors(everything, metadata)}});
    if (on_epoch) on_epoch(result);
  }
  return true;
}

}  // namespace tg::train
