#include "topics.h"

#include "buffers.h"
#include "connection.h"
#include "ws_frame.h"

namespace nlws {

PublishJob::~PublishJob() {
  for (Variant& v : variants_)
    if (v.frame) v.frame->Unref();
}

SharedFrame* PublishJob::Compressed(int window_bits, int level) {
  for (Variant& v : variants_)
    if (v.bits == window_bits && v.level == level) return v.frame;
  std::vector<uint8_t> z;
  SharedFrame* f = nullptr;
  if (deflaters_->Compress(window_bits, level, plain_->payload(), plain_->payload_len(), &z)) {
    size_t flen;
    uint8_t* block = NewFrame(false, plain_->opcode, z.data(), z.size(), &flen, true);
    if (block) {
      f = new SharedFrame();
      f->block = block;
      f->len = flen;
      f->header_len = FrameHeaderSize(z.size(), false);
      f->opcode = plain_->opcode;
      if (plain_->held) f->Count(plain_->held);
    }
  }
  variants_.push_back(Variant{window_bits, level, f});
  return f;
}

bool Topics::Subscribe(Conn* c, Memberships* mine, const std::string& name,
                       int64_t max_backpressure) {
  for (const Membership& m : *mine) {
    if (m.topic->name != name) continue;
    m.topic->subs[m.index].max_backpressure = max_backpressure;
    return false;
  }
  std::unique_ptr<Topic>& slot = map_[name];
  if (!slot) {
    slot.reset(new Topic());
    slot->name = name;
  }
  Topic* t = slot.get();
  t->subs.push_back(Topic::Sub{c, static_cast<uint32_t>(mine->size()), max_backpressure});
  mine->push_back(Membership{t, static_cast<uint32_t>(t->subs.size() - 1)});
  return true;
}

bool Topics::Unsubscribe(Conn* c, Memberships* mine, const std::string& name) {
  (void)c;
  for (uint32_t k = 0; k < mine->size(); k++) {
    if ((*mine)[k].topic->name != name) continue;
    Remove(mine, k);
    return true;
  }
  return false;
}

void Topics::LeaveAll(Memberships* mine) {
  while (!mine->empty()) Remove(mine, static_cast<uint32_t>(mine->size() - 1));
}

void Topics::Remove(Memberships* mine, uint32_t k) {
  Membership m = (*mine)[k];
  Topic* t = m.topic;
  // Swap-remove from the topic's list; the moved subscription learns its new place.
  Topic::Sub moved = t->subs.back();
  t->subs[m.index] = moved;
  t->subs.pop_back();
  if (m.index < t->subs.size()) moved.conn->memberships()[moved.index].index = m.index;
  // And from the connection's list.
  Membership last = mine->back();
  (*mine)[k] = last;
  mine->pop_back();
  if (k < mine->size()) last.topic->subs[last.index].index = k;
  if (t->subs.empty()) {
    std::string n = t->name;
    map_.erase(n);  // frees t
  }
}

const Topics::Topic* Topics::Find(const std::string& name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : it->second.get();
}

}  // namespace nlws
