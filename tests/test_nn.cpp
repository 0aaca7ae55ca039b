// Modules, state dicts, optimizers and training.
#include <cmath>
#include <filesystem>

#include "tests/helpers.h"
#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/nn/nn.h"
#include "tinygrad-cpp/nn/optim.h"
#include "tinygrad-cpp/models/train.h"

using namespace tg;
using test::contains;
using test::error_message;
namespace fs = std::filesystem;

using test::TempDir;

TEST_SUITE("nn") {
  TEST_CASE("FashionCNN has PyTorch's state_dict names, shapes and init bounds") {
    Generator gen(0);
    auto model = models::make_fashion_cnn(gen);
    const nn::NamedParameters params = model->named_parameters();
    const std::vector<std::pair<std::string, Shape>> expected = {
        {"conv1.weight", {16, 1, 5, 5}}, {"conv1.bias", {16}}, {"conv2.weight", {32, 16, 5, 5}}, {"conv2.bias", {32}},
        {"fc1.weight", {128, 1568}},     {"fc1.bias", {128}},  {"fc2.weight", {10, 128}},        {"fc2.bias", {10}}};
    REQUIRE(params.size() == expected.size());
    for (size_t i = 0; i < params.size(); ++i) {
      CHECK(params[i].first == expected[i].first);
      CHECK(params[i].second.shape() == expected[i].second);
      CHECK(params[i].second.requires_grad());
    }
    // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): conv2 fan_in = 16*5*5 = 400 -> bound 0.05.
    const Tensor& w = params[2].second;
    CHECK(tg::max(w).item() <= 0.05f);
    CHECK(tg::max(w).item() > 0.045f);
    CHECK(-tg::max(-w).item() >= -0.05f);
  }

  TEST_CASE("intermediate activations by layer name") {
    NEEDS_TASKS("relu");
    Generator gen(1);
    auto model = models::make_fashion_cnn(gen);
    NoGrad no_grad;
    const Tensor logits = (*model)(Tensor::randn({3, 1, 28, 28}, gen));
    CHECK(logits.shape() == Shape{3, 10});
    CHECK(model->activation("conv1").shape() == Shape{3, 16, 28, 28});
    CHECK(model->activation("relu2").shape() == Shape{3, 32, 14, 14});
    CHECK(model->activation("fc1").shape() == Shape{3, 128});
    CHECK(model->activation("fc2").same_as(logits));
    for (int64_t i = 0; i < model->activation("relu1").numel(); ++i) REQUIRE(model->activation("relu1").data()[i] >= 0.f);
    CHECK(contains(error_message([&] { model->activation("conv3"); }), "no layer named 'conv3' (layers: conv1, relu1"));
    const Tensor features = model->forward_until(Tensor::zeros({1, 1, 28, 28}), "pool2");
    CHECK(features.shape() == Shape{1, 32, 7, 7});
  }

  TEST_CASE("dropout is active in train mode only") {
    nn::Sequential model;
    model.add("drop", std::make_shared<nn::Dropout>(0.5f, 3));
    const Tensor x = Tensor::ones({1000});
    model.train();
    int zeros = 0;
    const Tensor y = model(x);
    for (int64_t i = 0; i < y.numel(); ++i) zeros += y.data()[i] == 0.f;
    CHECK(zeros > 400);
    CHECK(zeros < 600);
    model.eval();
    CHECK(model(x).to_vector() == x.to_vector());
  }

  TEST_CASE("load_state_dict checks names and shapes") {
    Generator gen(2);
    auto model = models::make_fashion_cnn(gen);
    io::NamedTensors tensors;
    for (auto& [name, t] : model->named_parameters()) tensors.tensors.emplace_back(name, t.clone());
    tensors.tensors[0].second.data()[0] = 42.f;
    nn::load_state_dict(*model, tensors);
    CHECK(model->named_parameters()[0].second.data()[0] == 42.f);
    io::NamedTensors extra = tensors;
    extra.tensors.emplace_back("fc3.weight", Tensor::zeros({1}));
    CHECK(contains(error_message([&] { nn::load_state_dict(*model, extra); }), "unexpected tensor 'fc3.weight'"));
    io::NamedTensors missing = tensors;
    missing.tensors.pop_back();
    CHECK(contains(error_message([&] { nn::load_state_dict(*model, missing); }), "missing tensor 'fc2.bias'"));
    io::NamedTensors wrong = tensors;
    wrong.tensors[1].second = Tensor::zeros({15});
    CHECK(contains(error_message([&] { nn::load_state_dict(*model, wrong); }), "tensor 'conv1.bias' has shape [15], the model expects [16]"));
  }

  TEST_CASE("a saved model loads back with its metadata, and a wrong arch is refused") {
    TempDir dir;
    Generator gen(3);
    auto model = models::make_fashion_cnn(gen);
    nn::save_module(dir.file("m.safetensors"), *model, models::fashion_cnn_metadata());
    const models::LoadedModel loaded = models::load_fashion_cnn(dir.file("m.safetensors"));
    CHECK(loaded.metadata.at("arch") == "FashionCNN");
    CHECK(loaded.metadata.at("classes").rfind("T-shirt/top,Trouser,", 0) == 0);
    CHECK(loaded.model->named_parameters()[6].second.to_vector() == model->named_parameters()[6].second.to_vector());
    CHECK_FALSE(loaded.model->is_training());
    nn::save_module(dir.file("other.safetensors"), *model, {{"arch", "ResNet"}});
    CHECK(contains(error_message([&] { models::load_fashion_cnn(dir.file("other.safetensors")); }), "arch is 'ResNet', not FashionCNN"));
  }
}

TEST_SUITE("optim") {
  TEST_CASE("SGD with momentum and weight decay against hand-computed steps") {
    // loss = 0.5 * p  ->  g = 0.5 on every step; p0 = 1, lr 0.1, momentum 0.9, wd 0.2
    Tensor p = Tensor::full({1}, 1.f, true);
    optim::SGD sgd({{"p", p}}, 0.1f, 0.9f, 0.2f);
    auto step = [&] {
      sgd.zero_grad();
      p.set_grad(Tensor::full({1}, 0.5f));  // the gradient of loss = 0.5 * p
      sgd.step();
    };
    step();  // d = 0.5 + 0.2*1 = 0.7; buf = 0.7; p = 1 - 0.07 = 0.93
    CHECK(p.item() == doctest::Approx(0.93));
    step();  // d = 0.5 + 0.2*0.93 = 0.686; buf = 0.9*0.7 + 0.686 = 1.316; p = 0.93 - 0.1316 = 0.7984
    CHECK(p.item() == doctest::Approx(0.7984));
  }

  TEST_CASE("Adam against hand-computed steps") {
    // loss = p^2 -> g = 2p; p0 = 1, lr 0.1, betas (0.9, 0.999), eps 1e-8
    Tensor p = Tensor::full({1}, 1.f, true);
    optim::Adam adam({{"p", p}}, 0.1f);
    auto step = [&] {
      adam.zero_grad();
      p.set_grad(Tensor::full({1}, 2.f * p.item()));  // the gradient of loss = p^2
      adam.step();
    };
    step();  // g = 2: m^ = 2, v^ = 4 -> p = 1 - 0.1 * 2/2 = 0.9
    CHECK(p.item() == doctest::Approx(0.9));
    step();  // g = 1.8: m = 0.9*0.2 + 0.1*1.8 = 0.36, m^ = 0.36/0.19 = 1.894737
             //          v = 0.999*0.004 + 0.001*3.24 = 0.007236, v^ = 0.007236/0.001999 = 3.619810
             //          p = 0.9 - 0.1 * 1.894737 / 1.902580 = 0.800412
    CHECK(p.item() == doctest::Approx(0.800412).epsilon(1e-5));
  }

  TEST_CASE("Adam's bias correction counts each parameter's own steps, as PyTorch's does") {
    // b gets its first gradient at step 5: its first update is the usual first Adam step,
    // lr * g / |g| = 0.1 (PyTorch moves it 0.1; counting the optimizer's steps moved it 0.0545).
    Tensor a = Tensor::full({1}, 1.f, true), b = Tensor::full({1}, 1.f, true);
    optim::Adam adam({{"a", a}, {"b", b}}, 0.1f);
    for (int step = 1; step <= 5; ++step) {
      adam.zero_grad();
      a.set_grad(Tensor::full({1}, 0.5f));
      if (step == 5) b.set_grad(Tensor::full({1}, 2.f));
      adam.step();
    }
    CHECK(b.item() == doctest::Approx(0.9f).epsilon(1e-5));
    CHECK(a.item() == doctest::Approx(0.5f).epsilon(1e-4));  // five steps of 0.1 on a constant gradient
  }

  TEST_CASE("learning-rate schedules") {
    Tensor p = Tensor::full({1}, 1.f, true);
    optim::SGD sgd({{"p", p}}, 1.f);
    sgd.set_schedule(optim::cosine(0.4f, 10, 2));
    std::vector<float> seen;
    for (int i = 0; i < 11; ++i) {
      sgd.zero_grad();
      p.set_grad(Tensor::ones({1}));
      sgd.step();
      seen.push_back(sgd.lr());
    }
    CHECK(seen[0] == doctest::Approx(0.2));   // warm-up 1/2
    CHECK(seen[1] == doctest::Approx(0.4));   // warm-up 2/2
    CHECK(seen[6] == doctest::Approx(0.2));   // halfway through the decay
    CHECK(seen[10] == doctest::Approx(0.0));  // the end
  }
}

TEST_SUITE("train") {
  TEST_CASE("a tiny CNN overfits 64 images to 100% accuracy") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward");
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    std::vector<int64_t> order(64);
    std::iota(order.begin(), order.end(), 0);
    const data::Batch batch = data::make_batch(sample, order, 0, 64);
    Generator gen(4);
    nn::Sequential model;
    model.add("conv", std::make_shared<nn::Conv2d>(1, 8, 3, gen, 2, 1))
        .add("relu", std::make_shared<nn::ReLU>())
        .add("pool", std::make_shared<nn::MaxPool2d>(2))
        .add("flatten", std::make_shared<nn::Flatten>())
        .add("fc", std::make_shared<nn::Linear>(8 * 7 * 7, 10, gen));
    optim::Adam adam(model.named_parameters(), 1e-2f);
    float loss_value = 0;
    for (int step = 0; step < 150; ++step) {
      adam.zero_grad();
      Tensor loss = cross_entropy(model(batch.images), batch.labels);
      loss_value = loss.item();
      loss.backward();
      adam.step();
    }
    data::Dataset first64;
    first64.pixels.assign(sample.pixels.begin(), sample.pixels.begin() + 64 * 784);
    first64.labels.assign(sample.labels.begin(), sample.labels.begin() + 64);
    const train::Evaluation e = train::evaluate(model, first64);
    CHECK(e.accuracy() == 1.0);
    CHECK(loss_value < 0.05f);
  }

  TEST_CASE("interrupted and resumed training equals an uninterrupted run") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward");
    TempDir dir;
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    data::Dataset small, test;
    small.pixels.assign(sample.pixels.begin(), sample.pixels.begin() + 256 * 784);
    small.labels.assign(sample.labels.begin(), sample.labels.begin() + 256);
    test.pixels.assign(sample.pixels.begin() + 900 * 784, sample.pixels.end());
    test.labels.assign(sample.labels.begin() + 900, sample.labels.end());
    train::Options options;
    options.epochs = 2;
    options.batch = 64;
    options.out = dir.file("straight.safetensors");
    int epochs_done = 0;
    CHECK(train::train_fashion_cnn(options, small, test, nullptr, [&](const train::EpochResult&) { ++epochs_done; }, nullptr));
    CHECK(epochs_done == 2);

    // The same run, stopped in the middle of epoch 2 ...
    std::atomic<bool> stop{false};
    options.out = dir.file("resumed.safetensors");
    auto stop_in_epoch_2 = [&](const train::Progress& p) {
      if (p.epoch == 2 && p.step == 2) stop = true;
    };
    CHECK_FALSE(train::train_fashion_cnn(options, small, test, stop_in_epoch_2, nullptr, &stop));
    const io::NamedTensors checkpoint = io::load_safetensors(train::checkpoint_path(options.out));
    CHECK(checkpoint.metadata.at("epoch") == "1");
    CHECK(checkpoint.find("optimizer.m.conv1.weight") != nullptr);
    CHECK(models::load_fashion_cnn(options.out).metadata.at("epoch") == "1");  // the weights file is whole

    // ... and resumed from its checkpoint.
    options.resume = train::checkpoint_path(options.out);
    CHECK(train::train_fashion_cnn(options, small, test, nullptr, nullptr, nullptr));
    const models::LoadedModel straight = models::load_fashion_cnn(dir.file("straight.safetensors"));
    const models::LoadedModel resumed = models::load_fashion_cnn(options.out);
    CHECK(resumed.metadata.at("epoch") == "2");
    const auto a = straight.model->named_parameters(), b = resumed.model->named_parameters();
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].second.to_vector() == b[i].second.to_vector());
  }
}
