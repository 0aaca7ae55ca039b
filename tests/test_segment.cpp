// Segmentation from a saliency map: seeds at quantiles, GrabCut through OpenCV, IoU.
#include "tests/helpers.h"
#include "tinygrad-cpp/explain/segment.h"

using namespace tg;
using namespace tg::segment;

namespace {
// A 40x30 RGB image: a reddish 14x10 block (x 12..25, y 8..17) on a bluish background,
// both with a little deterministic texture so each color model has some spread.
io::Image block_image() {
  io::Image image{40, 30, 3, std::vector<uint8_t>(40 * 30 * 3)};
  for (int y = 0; y < 30; ++y)
    for (int x = 0; x < 40; ++x) {
      const bool inside = x >= 12 && x < 26 && y >= 8 && y < 18;
      const int texture = (x * 7 + y * 13) % 21;
      image.at(y, x, 0) = static_cast<uint8_t>(inside ? 200 + texture : 30 + texture);
      image.at(y, x, 1) = static_cast<uint8_t>(inside ? 60 + texture : 80 + texture);
      image.at(y, x, 2) = static_cast<uint8_t>(inside ? 40 + texture : 190 + texture);
    }
  return image;
}
std::vector<uint8_t> block_mask() {
  std::vector<uint8_t> mask(40 * 30);
  for (int y = 8; y < 18; ++y)
    for (int x = 12; x < 26; ++x) mask[y * 40 + x] = 1;
  return mask;
}
}  // namespace

TASK_PROBE("grabcut-seeds") { seeds_from_saliency(Tensor::ones({2, 2})); }

// The grabcut-seeds task's sub-cases.
TEST_SUITE("grabcut-seeds") {
  TEST_CASE("seeds by hand: the top quantile is the object, the bottom one background, the rest left to GrabCut") {
    const Tensor map = reshape(Tensor::arange(0, 100), {10, 10});  // 0..99
    const std::vector<uint8_t> seeds = seeds_from_saliency(map, 0.95, 0.30);
    REQUIRE(seeds.size() == 100);
    // lround(0.95 * 99) = 94 and lround(0.30 * 99) = 30: values >= 94 and <= 30.
    CHECK(std::count(seeds.begin(), seeds.end(), kForeground) == 6);
    CHECK(std::count(seeds.begin(), seeds.end(), kBackground) == 31);
    CHECK(std::count(seeds.begin(), seeds.end(), kProbablyForeground) == 63);
    CHECK(seeds[99] == kForeground);
    CHECK(seeds[0] == kBackground);
    CHECK(seeds[50] == kProbablyForeground);
    // [1,H,W] is the same map.
    CHECK_VALUES(seeds_from_saliency(reshape(map, {1, 10, 10}), 0.95, 0.30), seeds);
  }

  TEST_CASE("seeds follow the values, not the positions: a shuffled map, checked by order and counts") {
    Generator gen(3);
    Tensor map = Tensor::empty({7, 13});  // 91 distinct values in random places
    for (int64_t i = 0; i < map.numel(); ++i) map.data()[i] = static_cast<float>(i) * 0.5f - 10.f;
    for (int64_t i = map.numel() - 1; i > 0; --i)
      std::swap(map.data()[i], map.data()[static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(i + 1))]);
    const std::vector<uint8_t> seeds = seeds_from_saliency(map, 0.9, 0.2);
    // lround(0.9 * 90) = 81 and lround(0.2 * 90) = 18: 10 values at the top, 19 at the bottom.
    CHECK(std::count(seeds.begin(), seeds.end(), kForeground) == 10);
    CHECK(std::count(seeds.begin(), seeds.end(), kBackground) == 19);
    // Every object seed is above every undecided pixel, which is above every background seed.
    float lowest_object = 1e9f, highest_undecided = -1e9f, lowest_undecided = 1e9f, highest_background = -1e9f;
    for (size_t i = 0; i < seeds.size(); ++i) {
      const float v = map.data()[i];
      if (seeds[i] == kForeground) lowest_object = std::min(lowest_object, v);
      if (seeds[i] == kBackground) highest_background = std::max(highest_background, v);
      if (seeds[i] == kProbablyForeground) highest_undecided = std::max(highest_undecided, v), lowest_undecided = std::min(lowest_undecided, v);
    }
    CHECK(highest_undecided < lowest_object);
    CHECK(highest_background < lowest_undecided);
  }

  TEST_CASE("ties and the ends: equal values get the same seed; quantile 1 is the maximum, 0 the minimum") {
    // Values 0, 1, 2, 3 repeated: the quantiles fall inside runs of equal values.
    Tensor map = Tensor::empty({4, 5});
    for (int64_t i = 0; i < 20; ++i) map.data()[i] = static_cast<float>(i % 4);
    const std::vector<uint8_t> seeds = seeds_from_saliency(map, 0.8, 0.3);  // places 15 and 6: values 3 and 1
    for (size_t i = 0; i < 20; ++i) {
      CAPTURE(i);
      CHECK(seeds[i] == (i % 4 == 3 ? kForeground : i % 4 <= 1 ? kBackground : kProbablyForeground));
    }
    const std::vector<uint8_t> ends = seeds_from_saliency(map, 1.0, 0.0);
    for (size_t i = 0; i < 20; ++i) CHECK(ends[i] == (i % 4 == 3 ? kForeground : i % 4 == 0 ? kBackground : kProbablyForeground));
  }
}

TEST_SUITE("segment") {
  TEST_CASE("seeds: bad maps and quantiles are refused with the reason") {
    const Tensor map = Tensor::zeros({4, 4});
    CHECK_THROWS_WITH_AS(seeds_from_saliency(Tensor::zeros({2, 4, 4})), doctest::Contains("[2,4,4]"), Error);
    CHECK_THROWS_WITH_AS(seeds_from_saliency(map, 0.3, 0.5), doctest::Contains("quantiles"), Error);
    Tensor nan_map = Tensor::zeros({2, 2});
    nan_map.data()[3] = std::nanf("");
    CHECK_THROWS_WITH_AS(seeds_from_saliency(nan_map), doctest::Contains("not finite"), Error);
  }

  TEST_CASE("GrabCut finds a colored block from a few seeds inside it and a border outside") {
    const io::Image image = block_image();
    const std::vector<uint8_t> truth = block_mask();
    std::vector<uint8_t> seeds(40 * 30, kProbablyForeground);
    for (int y = 0; y < 30; ++y)
      for (int x = 0; x < 40; ++x)
        if (x < 3 || x >= 37 || y < 3 || y >= 27) seeds[y * 40 + x] = kBackground;
    for (int y = 11; y < 14; ++y)
      for (int x = 17; x < 20; ++x) seeds[y * 40 + x] = kForeground;
    const std::vector<uint8_t> mask = grabcut(image, seeds, 5);
    REQUIRE(mask.size() == truth.size());
    // Without GrabCut the guess "everything not surely background" is far off...
    std::vector<uint8_t> guess(seeds.size());
    for (size_t i = 0; i < seeds.size(); ++i) guess[i] = seeds[i] != kBackground;
    CHECK(intersection_over_union(guess, truth) < 0.3);
    // ...and GrabCut recovers the block.
    CHECK(intersection_over_union(mask, truth) > 0.95);
    // Surely-background seeds stay background.
    CHECK(mask[0] == 0);
  }

  TEST_CASE("GrabCut on a gray image and with wrong inputs") {
    io::Image gray{40, 30, 1, std::vector<uint8_t>(40 * 30, 20)};
    const std::vector<uint8_t> truth = block_mask();
    for (size_t i = 0; i < truth.size(); ++i)
      if (truth[i]) gray.pixels[i] = static_cast<uint8_t>(220 + i % 7);
    std::vector<uint8_t> seeds(40 * 30, kProbablyForeground);
    seeds[0] = seeds[1] = seeds[40] = kBackground;
    seeds[13 * 40 + 18] = kForeground;
    CHECK(intersection_over_union(grabcut(gray, seeds, 3), truth) > 0.95);

    CHECK_THROWS_WITH_AS(grabcut(gray, std::vector<uint8_t>(10, kForeground)), doctest::Contains("10 seeds for a 40x30"), Error);
    CHECK_THROWS_WITH_AS(grabcut(gray, std::vector<uint8_t>(1200, kForeground)), doctest::Contains("both"), Error);
    std::vector<uint8_t> bad = seeds;
    bad[5] = 7;
    CHECK_THROWS_WITH_AS(grabcut(gray, bad), doctest::Contains("seed value 7"), Error);
    CHECK_THROWS_WITH_AS(grabcut(gray, seeds, 0), doctest::Contains("iterations"), Error);
    io::Image broken = gray;
    broken.pixels.resize(10);
    CHECK_THROWS_WITH_AS(grabcut(broken, seeds), doctest::Contains("40x30x1 with 10 bytes"), Error);
  }

  TEST_CASE("intersection over union") {
    CHECK(intersection_over_union({1, 1, 0, 0}, {0, 1, 1, 0}) == doctest::Approx(1.0 / 3));
    CHECK(intersection_over_union({0, 0}, {0, 0}) == 1.0);
    CHECK_THROWS_WITH_AS(intersection_over_union({1}, {1, 0}), doctest::Contains("1 and 2"), Error);
  }

  TEST_CASE("a detector's box: seeds outside it become background, the ones inside stay") {
    // A 4x3 image, box x 1..2, y 1..1 (two pixels).
    std::vector<uint8_t> seeds(12, kProbablyForeground);
    seeds[5] = kForeground;
    seeds[0] = kForeground;  // outside the box: overruled
    background_outside(seeds, 4, 3, {.x0 = 1, .y0 = 1, .x1 = 3, .y1 = 2});
    const std::vector<uint8_t> expected = {0, 0, 0, 0, 0, kForeground, kProbablyForeground, 0, 0, 0, 0, 0};
    CHECK(seeds == expected);
    // A box reaching past the image is clipped; a wrong size is refused with both numbers.
    std::vector<uint8_t> all(12, kProbablyForeground);
    background_outside(all, 4, 3, {.x0 = -5, .y0 = -5, .x1 = 50, .y1 = 50});
    CHECK(std::count(all.begin(), all.end(), kProbablyForeground) == 12);
    CHECK_THROWS_WITH_AS(background_outside(all, 5, 3, {}), doctest::Contains("12 pixels for a 5x3 image (expected 15)"), Error);
  }

  TEST_CASE("box coverage: the share of the box in the mask and of the mask in the box") {
    // The block's own box covered fully; a box of its left half is covered fully and holds half the mask.
    const std::vector<uint8_t> mask = block_mask();
    const BoxCoverage whole = box_coverage(mask, 40, 30, {.x0 = 12, .y0 = 8, .x1 = 26, .y1 = 18});
    CHECK(whole.box_covered == 1.0);
    CHECK(whole.mask_inside == 1.0);
    const BoxCoverage left = box_coverage(mask, 40, 30, {.x0 = 12, .y0 = 8, .x1 = 19, .y1 = 18});
    CHECK(left.box_covered == 1.0);
    CHECK(left.mask_inside == doctest::Approx(0.5));
    // A box twice the block's height: half of it covered, all of the mask inside.
    const BoxCoverage tall = box_coverage(mask, 40, 30, {.x0 = 12, .y0 = 3, .x1 = 26, .y1 = 23});
    CHECK(tall.box_covered == doctest::Approx(0.5));
    CHECK(tall.mask_inside == 1.0);
    const BoxCoverage empty = box_coverage(mask, 40, 30, {.x0 = 5, .y0 = 5, .x1 = 5, .y1 = 9});
    CHECK(empty.box_covered == 0.0);
    CHECK(empty.mask_inside == 0.0);
  }

  TEST_CASE("GrabCut from a box alone: everything outside background, inside probably the object") {
    // GrabCut's own start (Rother et al.): a box around the block with a margin, no saliency.
    std::vector<uint8_t> seeds(40 * 30, kProbablyForeground);
    background_outside(seeds, 40, 30, {.x0 = 8, .y0 = 5, .x1 = 30, .y1 = 21});
    const std::vector<uint8_t> mask = grabcut(block_image(), seeds);
    CHECK(intersection_over_union(mask, block_mask()) > 0.9);
  }
}
