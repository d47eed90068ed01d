// Publish/subscribe topics of one server: which connections subscribe to
// which topic names. Subscribing, unsubscribing and leaving every topic are
// O(1) per subscription (a subscription knows its place in both lists, and a
// connection with many topics finds one by a hash), so 10,000 subscribers
// join and leave a topic, and one connection joins and leaves 100,000 topics,
// in linear time overall. (Until 2026-11-28 a connection looked for the topic
// in its list by name: the service thread spent ~1 s on 30,000 subscribe()
// calls of one connection, and 24 s on 100,000, with every connection
// waiting.)
//
// Service thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "deflate.h"
#include "keyed_hash.h"
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
  // A connection's subscriptions: a list, and once it is longer than
  // kIndexFrom, a hash from topic to place in it as well (a list that short
  // is searched faster than hashed, and most connections have a few topics;
  // the hash goes again when the list is down to half that).
  class Memberships {
   public:
    static constexpr size_t kIndexFrom = 16;
    bool empty() const { return list_.empty(); }
    size_t size() const { return list_.size(); }
    Membership& operator[](uint32_t k) { return list_[k]; }
    // The place of t's subscription, or -1.
    int64_t Find(const Topic* t) const;
    void Add(Membership m);
    // Swap-removes the k-th: the last one moves into place k.
    void RemoveAt(uint32_t k);

   private:
    using Index = std::unordered_map<const Topic*, uint32_t>;
    std::vector<Membership> list_;
    std::unique_ptr<Index> index_;  // null while the list is short (8 bytes, not 56)
  };

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

  // Keyed: topic names may be a client's (keyed_hash.h).
  std::unordered_map<std::string, std::unique_ptr<Topic>, KeyedHash> map_;
};

}  // namespace nlws
