// Publish/subscribe topics of one server: which connections subscribe to
// which topic names. Subscribing, unsubscribing and leaving every topic are
// O(1) per subscription (a subscription knows its place in both lists), so
// 10,000 subscribers join and leave a topic in linear time overall.
//
// Service thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "deflate.h"
#include "wire.h"

namespace nlws {

class Conn;
struct ConnShared;

// One publish on its way to the subscribers: the frame built once on the
// main thread, and the compressed variants made on first need for
// subscribers with permessage-deflate (one per window size and level).
class PublishJob {
 public:
  PublishJob(SharedFrame* plain, ConnShared* skip, SharedDeflaters* deflaters)
      : plain_(plain), skip_(skip), deflaters_(deflaters) {}
  ~PublishJob();
  PublishJob(const PublishJob&) = delete;
  PublishJob& operator=(const PublishJob&) = delete;
  SharedFrame* plain() const { return plain_; }
  ConnShared* skip() const { return skip_; }
  // The message compressed alone (no context): null when compression failed.
  SharedFrame* Compressed(int window_bits, int level);

 private:
  SharedFrame* plain_;
  ConnShared* skip_;
  SharedDeflaters* deflaters_;
  struct Variant {
    int bits;
    int level;
    SharedFrame* frame;
  };
  std::vector<Variant> variants_;
};

class Topics {
 public:
  struct Topic;
  // A connection's side of its subscriptions (lives in the Conn).
  struct Membership {
    Topic* topic;
    uint32_t index;  // position of this subscription in topic->subs
  };
  struct Topic {
    std::string name;
    struct Sub {
      Conn* conn;
      uint32_t index;            // position of this subscription in the conn's memberships
      int64_t max_backpressure;  // for this topic's messages; 0: the connection's own
    };
    std::vector<Sub> subs;
  };
  using Memberships = std::vector<Membership>;

  Topics() = default;
  Topics(const Topics&) = delete;
  Topics& operator=(const Topics&) = delete;

  // False when c already subscribes (or no longer does, for Unsubscribe);
  // subscribing again changes max_backpressure.
  bool Subscribe(Conn* c, Memberships* mine, const std::string& name, int64_t max_backpressure);
  bool Unsubscribe(Conn* c, Memberships* mine, const std::string& name);
  void LeaveAll(Memberships* mine);
  // The topic's subscribers, or null when nobody subscribes.
  const Topic* Find(const std::string& name) const;
  size_t size() const { return map_.size(); }

 private:
  void Remove(Memberships* mine, uint32_t k);

  std::unordered_map<std::string, std::unique_ptr<Topic>> map_;
};

}  // namespace nlws
