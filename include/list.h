/*
 * list.h - intrusive circular doubly-linked list. An object's state is the
 * list it is on (STYLE.md section 3), so moves are O(1) and list lengths are
 * the counters SHOW reports.
 */
#ifndef BERTH_LIST_H
#define BERTH_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
	struct list *next;
	struct list *prev;
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_for_each_safe(pos, tmp, head)                                                         \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

static inline void list_init(struct list *l)
{
	l->next = l->prev = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* Unlink node (if linked) and leave it self-linked. */
static inline void list_del(struct list *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	list_init(node);
}

static inline void list_append(struct list *head, struct list *node)
{
	node->prev = head->prev;
	node->next = head;
	head->prev->next = node;
	head->prev = node;
}

static inline void list_move_tail(struct list *head, struct list *node)
{
	list_del(node);
	list_append(head, node);
}

static inline struct list *list_first(const struct list *head)
{
	return list_empty(head) ? NULL : head->next;
}

/* Length by walking: used by SHOW and tests, never on the data path. */
static inline size_t list_count(const struct list *head)
{
	size_t n = 0;
	for (const struct list *p = head->next; p != head; p = p->next)
		n++;
	return n;
}

/* Length, but stop counting at max: bounded work on hot paths. */
static inline size_t list_count_upto(const struct list *head, size_t max)
{
	size_t n = 0;
	for (const struct list *p = head->next; p != head && n < max; p = p->next)
		n++;
	return n;
}

#endif
